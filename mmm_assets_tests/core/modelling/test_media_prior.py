"""The spend-share media prior (model.media_prior): media modest unless the data say otherwise."""

import numpy as np
import pymc as pm
import pytest
from pymc_extras.prior import Scaled

from mmm_assets.core.config import TARGET_COLUMN
from mmm_assets.core.modelling.build import build_mmm, split_xy
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
    sigma = spend_share_beta_sigma(cfg, frame, float(frame[TARGET_COLUMN].max()))
    beta = build_mmm(cfg, None, frame).saturation.function_priors["beta"]
    assert beta.distribution == "HalfNormal"
    assert np.asarray(beta.parameters["sigma"]) == pytest.approx(sigma)
    shared = build_mmm(small_config({"model": {"media_prior": {"shared_scale_sd": 0.6}}}), None,
                       frame).saturation.function_priors["beta"]
    assert isinstance(shared, Scaled) and shared.dist.distribution == "HalfNormal"
    assert np.asarray(shared.factor) == pytest.approx(sigma)
    assert shared.dist.parameters["sigma"].distribution == "LogNormal"
    assert shared.dist.parameters["sigma"].parameters == pytest.approx({"mu": -0.18, "sigma": 0.6})
    library = small_config({"model": {"media_prior": {"kind": "library"}}})
    assert np.ndim(build_mmm(library, None, frame).saturation.function_priors["beta"].parameters["sigma"]) == 0


def _channels(n: int) -> dict:
    """``n`` more synthetic channels beside the small scenario's three, their spend staggered."""
    return {f"c{i:02d}": {"spend_min": 1000 + 50 * i, "spend_max": 9000 + 200 * i, "beta": 0.4,
                          "saturation_lam": 2.5, "adstock_alpha": 0.3} for i in range(n)}


def _total_spread(cfg) -> float:
    """The prior's relative spread (sd / mean) of the channels' summed effect at saturation."""
    frame = _frame(cfg)
    mmm = build_mmm(cfg, None, frame)
    mmm.build_model(*split_xy(frame))
    with mmm.model:
        draws = pm.sample_prior_predictive(draws=2000, var_names=["saturation_beta"], random_seed=3)
    total = draws.prior["saturation_beta"].sum("channel").to_numpy().ravel()
    return float(total.std() / total.mean())


def test_a_shared_scale_keeps_the_medias_total_as_uncertain_with_30_channels_as_with_3(small_config):
    """Independent channels' prior pins the media's total down as 1/sqrt(channels) (at 30 channels its 94 % range
    excluded the truth on realistic data); one shared scale keeps it as open at 30 channels as at 3."""
    spreads = {(n, shared): _total_spread(small_config({
        "data": {"synthetic": {"channels": _channels(n - 3)}}, "model": {"media_prior": {"shared_scale_sd": shared}},
    })) for n in (3, 30) for shared in (None, 0.6)}
    # measured: independent 0.49 at 3 channels, 0.22 at 30; shared 0.93 and 0.69
    assert spreads[30, None] < 0.6 * spreads[3, None]  # 0.756 / sqrt(n) for equal spends
    assert spreads[3, 0.6] > 0.6 and spreads[30, 0.6] > 0.6
    assert spreads[30, 0.6] > 2.5 * spreads[30, None]


@pytest.mark.slow
def test_a_fit_with_a_shared_scale_is_saved_loaded_and_reads_its_ceilings(small_config, tmp_path):
    """The whole path of the opt-in prior: fit, save (the model's config as JSON), load, the prior -> posterior table
    with the ceilings themselves beside the free variables behind them."""
    from mmm_assets.core.evaluation.prior_checks import prior_checks
    from mmm_assets.core.modelling.fitting import fit
    from mmm_assets.core.modelling.persistence import load_model, save_model

    cfg = small_config({"model": {"media_prior": {"shared_scale_sd": 0.6}},
                        "sampler": {"draws": 150, "tune": 150}})
    frame = _frame(cfg)
    result = fit(cfg, frame, in_sample_predictive=False)
    loaded = load_model(save_model(result.mmm, tmp_path / "shared.nc"))
    assert isinstance(loaded.saturation.function_priors["beta"], Scaled)
    assert {"saturation_beta", "saturation_beta_unscaled", "saturation_beta_unscaled_sigma"} <= set(
        loaded.idata.posterior.data_vars)
    table = prior_checks(result.mmm, cfg, draws=200).prior_posterior
    betas = table[table["parameter"] == "saturation_beta"]
    assert set(betas["element"]) == set(cfg.channels) and (betas["verdict"] == "informed by the data").all()
