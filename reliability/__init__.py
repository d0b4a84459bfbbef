"""The reliability suite: the real service (gunicorn, a qcluster, PostgreSQL) on loopback,
attacked by scenarios that each report one row of figures. `python -m reliability` runs them
all; tests/test_reliability.py runs the CI-sized subset."""
