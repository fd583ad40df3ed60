"""Priors: the signs of the non-media terms and the analysts' ROI priors, from prior to posterior."""

import logging

import numpy as np
import pymc as pm
import pytensor
import pytest
from pymc.model.transform.optimization import freeze_dims_and_data

from mmm_assets.core.data.calendar import with_calendar
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.inference.compiling import QUICK_MODE
from mmm_assets.core.modelling import build as build_core
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.modelling.priors import (
    ROI_PRIOR,
    add_roi_priors,
    posterior_roas,
    roi_prior_report,
    roi_prior_table,
)
from mmm_assets.core.synthetic.generator import generate
from mmm_assets_tests.conftest import merge
from mmm_assets_tests.role_scenarios import ROI_PRIOR_SD, TESTED, collinear_fit, roles_fit

SIGNED = {
    "data": {"synthetic": {
        "competitors": {"rival": {"activity_min": 0, "activity_max": 100, "effect": -0.3, "adstock_alpha": 0.4}},
        "controls": {"up": {"level": 5, "sd": 1, "effect": 0.1}, "down": {"level": 5, "sd": 1, "effect": -0.1},
                     "any": {"level": 5, "sd": 1, "effect": 0.05}},
    }},
    "model": {"trend": True, "terms": {"up": {"sign": "positive"}, "down": {"sign": "negative"}}},
}


def _built(cfg):
    frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    features = with_calendar(frame, cfg)
    mmm = build_core.build_mmm(cfg)
    X, y = build_core.split_xy(features)
    mmm.build_model(X, y)
    mmm.add_original_scale_contribution_variable(var=["channel_contribution", "y"])
    return mmm, X


def test_term_signs_hold_in_the_prior_and_the_library_control_term_is_off(small_config):
    cfg = small_config(SIGNED)
    mmm, _ = _built(cfg)
    prior = pm.sample_prior_predictive(
        draws=400, model=mmm.model, var_names=["terms_effect", "control_contribution"], random_seed=1
    ).prior
    effect = prior["terms_effect"]
    assert list(effect.coords["term"].values) == ["rival", "up", "down", "any", "trend"]
    assert (effect.sel(term="up") >= 0).all() and (effect.sel(term="down") <= 0).all()
    assert (effect.sel(term="rival") <= 0).all()
    for free in ("any", "trend"):
        assert (effect.sel(term=free) > 0).any() and (effect.sel(term=free) < 0).any()
    assert float(np.abs(prior["control_contribution"]).max()) == 0.0  # gamma_control is exactly zero


#: Two controls, two events, a trend and yearly seasonality (the files scenario of issue 23 that printed dozens of
#: PyTensor ``useless_xtensor_from_tensor`` tracebacks), under three layouts of the terms' signs: all free (the
#: defaults of controls and trend; what printed), all positive (one sign group again) and mixed in an order that
#: makes the model reorder its coefficients.
TERMS = {
    "data": {"synthetic": {
        "controls": {"price": {"level": 10.0, "sd": 0.5, "persistence": 0.8, "effect": -0.3},
                     "promo": {"level": 1.0, "sd": 0.5, "effect": 0.1}},
        "events": {"black_friday": 0.5, "christmas": -0.3},
        "trend": 0.1,
        "seasonality": {"amplitude": 0.3, "peak_day": 355},
    }},
    "model": {"yearly_seasonality": 2, "trend": True, "calendar": {
        "black_friday": {"dates": ["2019-11-29", "2020-11-27"], "sign": "free"},
        "christmas": {"dates": ["2019-12-25", "2020-12-25"], "sign": "free"},
    }},
}
POSITIVE = {"sign": "positive"}
SIGN_LAYOUTS = {
    "all free": {},
    "all positive": {"model": {"calendar": {"black_friday": POSITIVE, "christmas": POSITIVE},
                               "terms": {"price": POSITIVE, "promo": POSITIVE, "trend": POSITIVE}}},
    "mixed": {"model": {"calendar": {"black_friday": POSITIVE}, "terms": {"promo": {"sign": "negative"}}}},
}
TRACEBACK_SIGNS = ("Traceback", "BUG IN FGRAPH", "Rewrite failure")


def _no_traceback(capsys, caplog) -> None:
    """Nothing PyTensor prints (stderr) or logs when a rewrite fails was printed or logged."""
    printed = capsys.readouterr().err
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for sign in TRACEBACK_SIGNS:
        assert sign not in printed, printed[:2000]
        assert sign not in logged, logged[:2000]


@pytest.mark.parametrize("layout", list(SIGN_LAYOUTS))
def test_the_terms_compile_without_rewrite_failures(small_config, capsys, caplog, layout):
    """Every deterministic from the free variables (how the posterior predictive, the ROAS counterfactuals and
    numpyro's post-processing evaluate them: the draws are inputs), in the quick mode and JAX, on the model with its
    dims frozen (static shapes, as PyMC's JAX sampling and the budget optimiser build it)."""
    cfg = small_config(merge(TERMS, SIGN_LAYOUTS[layout]))
    caplog.set_level(logging.WARNING)
    mmm, _ = _built(cfg)
    for model in (mmm.model, freeze_dims_and_data(mmm.model)):
        for mode in (QUICK_MODE, "JAX"):
            pytensor.function(model.free_RVs, model.deterministics, mode=mode, on_unused_input="ignore")
    _no_traceback(capsys, caplog)
    model = mmm.model
    assert list(model.coords["term"]) == ["price", "promo", "event_black_friday", "event_christmas", "trend"]
    values = {v.name: np.arange(1.0, 1.0 + model[v.name].type.shape[0]) * (10 if "magnitude" in v.name else 1)
              for v in model.free_RVs if v.name in ("terms_magnitude", "terms_free")}
    effect = pytensor.function([model[n] for n in values], model["terms_effect"])(*values.values())
    expected = {"all free": [1, 2, 3, 4, 5], "all positive": [10, 20, 30, 40, 50],
                "mixed": [1, -10, 20, 2, 3]}[layout]  # signed (promo, black_friday) first in the variables
    np.testing.assert_allclose(effect, expected)


@pytest.mark.slow
def test_a_fit_with_free_controls_events_and_trend_logs_no_traceback(small_config, capsys, caplog):
    """A tiny numpyro fit (its in-sample posterior predictive included) and the ROAS of the all-free layout."""
    cfg = small_config(merge(TERMS, {"sampler": {"chains": 1, "draws": 30, "tune": 30, "warm_tune": 30}}))
    caplog.set_level(logging.WARNING)
    frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    features = with_calendar(frame, cfg)
    result = fit(cfg, features)
    table = channel_roas(result.mmm, features, cfg.kpi)
    assert set(table["channel"]) == set(cfg.channels)
    _no_traceback(capsys, caplog)


def test_roi_priors_become_a_roas_calibration_term(small_config):
    cfg = small_config({"model": {"roi_priors": {"adwords": {"mean": 3.0, "sd": 0.5}}}})
    table = roi_prior_table(cfg)
    assert table.to_dict("records") == [{"channel": "adwords", "roas": 3.0, "sigma": 0.5}]
    mmm, X = _built(cfg)
    assert add_roi_priors(mmm, cfg, X) == ["adwords"]
    term = mmm.model[ROI_PRIOR]
    assert term in mmm.model.observed_RVs
    assert float(mmm.model.rvs_to_values[term].data[0]) == 3.0

    plain = small_config()
    mmm, X = _built(plain)
    assert add_roi_priors(mmm, plain, X) == [] and ROI_PRIOR not in mmm.model.named_vars
    assert roi_prior_report(mmm, plain).empty


@pytest.mark.slow
def test_informative_data_move_a_wrong_prior_to_the_truth():
    """The roles example believes adwords' ROAS is 3 +- 1; the truth is higher and two years of data say so."""
    fitted = roles_fit()
    (row,) = roi_prior_report(fitted.mmm, fitted.cfg).to_dict("records")
    truth = float(fitted.true_roas()["adwords"])
    assert (row["channel"], row["prior_mean"], row["prior_sd"]) == ("adwords", 3.0, 1.0)
    assert row["hdi_low"] <= row["posterior_mean"] <= row["hdi_high"]
    assert abs(row["posterior_mean"] - truth) < 0.1 * truth  # the data's answer...
    assert np.sign(row["shift"]) == np.sign(truth - row["prior_mean"])  # ...moved the belief toward the truth
    assert row["sd_ratio"] < 0.25 and not row["prior_in_hdi"]  # and are far more precise than the belief
    draws = posterior_roas(fitted.mmm).sel(channel="adwords")
    assert row["posterior_mean"] == pytest.approx(float(draws.mean()))
    assert row["shift_sd"] == pytest.approx(row["shift"] / row["prior_sd"])


@pytest.mark.slow
def test_a_prior_decides_what_ambiguous_data_cannot():
    """Two nearly collinear channels: alone the data misattribute them; a true belief about facebook pulls it back."""
    plain, informed = collinear_fit("uncalibrated"), collinear_fit("roi")
    truth = float(plain.true_roas()[TESTED])
    before = posterior_roas(plain.mmm).sel(channel=TESTED)
    after = posterior_roas(informed.mmm).sel(channel=TESTED)
    assert abs(float(after.mean()) - truth) < abs(float(before.mean()) - truth)
    assert float(after.std()) < float(before.std())
    (row,) = roi_prior_report(informed.mmm, informed.cfg).to_dict("records")
    assert row["prior_sd"] == ROI_PRIOR_SD and row["prior_in_hdi"]
    # the data barely inform the split, so the posterior is about as wide as the belief (1.006 in a clean-clone run)
    assert abs(row["shift_sd"]) < 1 and row["sd_ratio"] < 1.1
    assert any(m == f"ROI priors on {TESTED}" for m in informed.messages)

