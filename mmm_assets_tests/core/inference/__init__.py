"""Tests of mmm_assets.core.inference."""
