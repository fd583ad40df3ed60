"""Tests of mmm_assets.core.stores."""
