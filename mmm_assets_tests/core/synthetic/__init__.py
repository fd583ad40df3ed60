"""Tests of mmm_assets.core.synthetic."""
