"""Tests of mmm_assets.core.decisions."""
