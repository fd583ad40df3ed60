"""Tests of mmm_assets.core.evaluation."""
