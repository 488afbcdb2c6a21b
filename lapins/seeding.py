"""Demo and load-test data (placeholder, replaced below)."""
DEPARTEMENT_RDVS = 200_000
