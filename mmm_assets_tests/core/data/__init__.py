"""Tests of mmm_assets.core.data."""
