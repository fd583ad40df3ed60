"""Tests of mmm_assets.core.presentation."""
