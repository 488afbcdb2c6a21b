"""Benchmarks (`make bench`, `python -m bench`): figures written to bench/results/latest.json, never timed tests."""
