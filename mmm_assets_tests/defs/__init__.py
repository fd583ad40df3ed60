"""Tests of the Dagster layer (mmm_assets.defs and definitions): assets, checks, automation, pool waits, outcomes."""
