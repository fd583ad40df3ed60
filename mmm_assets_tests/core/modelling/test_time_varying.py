"""A time-varying baseline (model.time_varying_intercept: PyMC-Marketing's HSGP on the intercept): it builds, samples
without the Laplace start, drifts week to week, and every decision reads the model as it is."""

import numpy as np
import pytest

from mmm_assets.core.config import load_config, merged
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.config.scenario import MMMConfig
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.decisions.contributions import weekly_contributions
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import generate


@pytest.mark.slow
def test_a_time_varying_intercept_drifts_and_the_decisions_read_it():
    cfg = load_config(DEFAULT_CONFIG)
    cfg = MMMConfig.model_validate(merged(cfg.model_dump(mode="json"), {
        "data": {"synthetic": {"end_date": "2020-12-31"}},
        "model": {"time_varying_intercept": True},
        "sampler": {"draws": 200, "tune": 200, "max_draws": None},
    }))
    frame, truth = generate(cfg.data.synthetic)
    features = weekly_features(cfg, frame)
    lines = []
    result = fit(cfg, features, report=lines.append)
    assert any(line.startswith("no Laplace start with a time-varying intercept") for line in lines), lines
    posterior = result.mmm.idata.posterior
    assert "intercept_latent_process_raw_hsgp_coefs_offset" in posterior
    intercept = posterior["intercept_contribution"].mean(("chain", "draw"))
    assert intercept.dims == ("date",) and float(intercept.std()) > 0  # a baseline that moves week to week
    # test draws (2 x 200): mixing, not the gates' 1.01, which the reference fit's 2 x 700 draws reach (README)
    assert result.diagnostics.divergences == 0 and result.diagnostics.max_rhat < 1.1

    roas = channel_roas(result.mmm, features, cfg.kpi).set_index("channel")
    true = truth.contributions[cfg.channels].sum() / features[cfg.channels].sum()
    assert np.allclose(roas["roas_mean"], true[roas.index], rtol=0.15), (roas["roas_mean"], true)
    contributions = weekly_contributions(result.mmm)
    baseline = contributions[contributions["component"] == "baseline"]["mean"].to_numpy()
    assert len(baseline) == len(features) and baseline.std() > 0
