"""Data coming in: a new département (territory.py), CSV imports, demo and benchmark data, their commands."""
