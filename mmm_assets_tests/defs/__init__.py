"""Tests of the Dagster layer (mmm_assets.defs and definitions): assets, checks, schedules, sensors, alerts, pool
waits, outcomes."""
