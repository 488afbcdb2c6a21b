"""Free slots: the pure slot engine (engine.py) and its I/O side over plages, absences and rdvs (availability.py)."""
