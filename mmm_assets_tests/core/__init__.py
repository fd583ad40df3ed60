"""Tests of mmm_assets.core, one folder per package, one module per module; none needs Dagster."""
