"""Where results are kept: DuckDB tables (writes, locks, disk-space checks), MLflow tracking with the model registry,
and alerts.
"""
