"""The spend-share media prior (model.media_prior): media modest unless the data say otherwise."""

import numpy as np
import pytest

from mmm_assets.core.config import TARGET_COLUMN
from mmm_assets.core.modelling.build import build_mmm
from mmm_assets.core.modelling.priors import MIN_SHARE_OF_EQUAL_SPLIT, spend_share_beta_sigma
from mmm_assets.core.synthetic.generator import generate


def _frame(cfg):
    frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    return frame


def test_expected_effects_add_up_to_the_media_share_split_by_spend(small_config):
    cfg = small_config({"model": {"media_prior": {"media_share": 0.3}}})
    frame = _frame(cfg)
    scale = float(frame[TARGET_COLUMN].max())
    expected = spend_share_beta_sigma(cfg, frame, scale) * np.sqrt(2 / np.pi)  # HalfNormal means
    assert expected.sum() == pytest.approx(0.3 * frame[TARGET_COLUMN].mean() / scale)
    spend = frame[cfg.channels].sum().to_numpy()
    assert expected / expected.sum() == pytest.approx(spend / spend.sum())


def test_owned_channels_get_an_equal_share_and_small_channels_a_floor(small_config):
    cfg = small_config({"data": {"synthetic": {"channels": {"email": {
        "role": "owned", "spend_min": 100, "spend_max": 900, "beta": 0.5, "saturation_lam": 2.0, "adstock_alpha": 0.3,
    }}}}})
    frame = _frame(cfg)
    frame[cfg.paid_channels[0]] *= 1e-6  # a paid channel that hardly spends
    weights = spend_share_beta_sigma(cfg, frame, 1.0)
    weights = weights / weights.sum()
    n = len(cfg.channels)
    owned = cfg.channels.index(cfg.owned_channels[0])
    assert weights.min() == pytest.approx(MIN_SHARE_OF_EQUAL_SPLIT / n, rel=0.1)  # the floor, renormalised
    assert weights[owned] == pytest.approx(1 / n, rel=0.1)


def test_the_built_model_carries_the_prior_and_library_keeps_its_own(small_config):
    cfg = small_config()
    frame = _frame(cfg)
    beta = build_mmm(cfg, None, frame).saturation.function_priors["beta"]
    assert beta.distribution == "HalfNormal"
    assert np.asarray(beta.parameters["sigma"]) == pytest.approx(
        spend_share_beta_sigma(cfg, frame, float(frame[TARGET_COLUMN].max()))
    )
    library = small_config({"model": {"media_prior": {"kind": "library"}}})
    assert np.ndim(build_mmm(library, None, frame).saturation.function_priors["beta"].parameters["sigma"]) == 0
