"""Tests of mmm_assets.core.modelling."""
