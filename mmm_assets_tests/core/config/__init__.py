"""Tests of mmm_assets.core.config."""
