"""Input data: a landing file (CSV or Parquet) read within bounds, mapped to the canonical weekly frame per market, and
checked into the validated feature frame. Shared by the landing sensor and the ingest and feature assets; imports no
PyMC.
"""
