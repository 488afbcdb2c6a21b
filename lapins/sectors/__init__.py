"""Sectorisation: which lieux and agents serve an address (`serving.py`), and the sectors a territory imports from a
CSV file, checked in a dry run then stored all at once (`imports.py`). The communes come from
lapins.locale.communes."""
