"""Model families (config/families/*.yaml): data generated with a family pair and fitted with it recover the truth
and every decision runs on the model's own curves; the specification comparison picks the generating families, and
the wrong family fits the weeks but fails the recovery gate.

The whole graph on a Weibull + Hill scenario runs in system/test_graph.py."""

import datetime as dt

import numpy as np
import pytest

from mmm_assets.core.config import load_config, merged
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.config.scenario import MMMConfig
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.decisions.advice import recommendations
from mmm_assets.core.decisions.budget import optimize_budget
from mmm_assets.core.decisions.contributions import weekly_contributions
from mmm_assets.core.decisions.roas import channel_roas, response_curves
from mmm_assets.core.evaluation.comparison import compare_specifications
from mmm_assets.core.evaluation.validation import holdout, validate
from mmm_assets.core.modelling.calibration import (
    Experiment,
    lift_test_report,
    read_lift_tests,
    sample_lift_tests,
)
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import generate

FAMILIES = PROJECT_DIR / "config" / "families"


def _fitted(cfg: MMMConfig):
    frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
    features = weekly_features(cfg, frame)
    result = fit(cfg, features)
    report = validate(cfg, features, result.mmm, result.diagnostics.as_dict(),
                      holdout(cfg, features, result.mmm, print), truth, None)
    return cfg, frame, features, truth, result.mmm, report


@pytest.fixture(scope="module")
def delayed_mm():
    return _fitted(load_config(FAMILIES / "delayed_michaelis_menten.yaml"))


def _gates(report) -> dict:
    return {g["gate"]: g for g in report.gates}


@pytest.mark.slow
def test_delayed_michaelis_menten_data_fitted_with_their_families_pass_every_gate(delayed_mm):
    cfg, _, features, truth, mmm, report = delayed_mm
    assert type(mmm.adstock).__name__ == "DelayedAdstock"
    assert type(mmm.saturation).__name__ == "MichaelisMentenSaturation"
    assert report.failed_gates() == []
    gates = _gates(report)
    assert gates["response_curve_recovery"]["value"] <= cfg.validation.thresholds.curve_rel_error_max
    assert gates["carryover_recovery"]["value"] <= cfg.validation.thresholds.mean_lag_abs_error_max
    # michaelis_menten's lam is not logistic's rate: compared through the curve, not one by one
    assert gates["saturation_lam_recovery"]["value"] is None and gates["adstock_alpha_recovery"]["value"] is None
    roas = channel_roas(mmm, features, cfg.kpi).set_index("channel")
    true = truth.contributions[cfg.channels].sum() / features[cfg.channels].sum()
    for channel in cfg.channels:
        assert roas.loc[channel, "roas_hdi_low"] <= true[channel] <= roas.loc[channel, "roas_hdi_high"], channel
        assert 0 < roas.loc[channel, "mroas_mean"] < roas.loc[channel, "roas_mean"], channel  # concave: the next unit earns less
        assert 0 < roas.loc[channel, "breakeven_weekly_spend"] < np.inf, channel


@pytest.mark.slow
def test_every_decision_reads_the_models_own_curves(delayed_mm, tmp_path):
    cfg, frame, features, truth, mmm, _ = delayed_mm
    curves = response_curves(mmm, features, grid_points=9)
    for channel, curve in curves.groupby("channel"):
        mean = curve["contribution_mean"].to_numpy()
        assert mean[0] == pytest.approx(0.0) and (np.diff(mean) > 0).all(), channel
        at = curve["weekly_spend"].to_numpy()
        assert np.allclose(mean, truth.steady_response(channel, at), rtol=0.1, atol=0.02 * mean.max()), channel

    budget = optimize_budget(mmm, features, cfg.decisions.budget, truth=truth)
    total = budget.allocation["current_spend"].sum()
    assert budget.allocation["optimized_spend"].sum() == pytest.approx(total, rel=cfg.decisions.budget.total_tolerance)
    assert budget.true_optimized_response >= budget.true_current_response  # better under the truth too
    advice = recommendations(budget, channel_roas(mmm, features, cfg.kpi), cfg.decisions.hold_band_pct, cfg.kpi)
    assert set(advice["channel"]) == set(cfg.channels) and advice["reason"].str.len().min() > 20

    contributions = weekly_contributions(mmm)
    means = contributions.pivot(index="date", columns="component", values="mean")
    parts = means[[*cfg.channels, "baseline"]].sum(axis=1)
    assert np.allclose(parts, means["predicted"], rtol=1e-6)  # the channels and the baseline add up
    media = means[cfg.channels].sum().sum() / features["y"].sum()
    true_media = truth.contributions[cfg.channels].sum().sum() / features["y"].sum()
    assert media == pytest.approx(true_media, abs=0.02)

    experiments = [Experiment("facebook", dt.date(2020, 6, 1), 6, 0.5), Experiment("linkedin", dt.date(2021, 3, 1), 6, -0.4)]
    sample_lift_tests(truth, frame, experiments, relative_sd=0.01, seed=3).to_csv(tmp_path / "lift.csv", index=False)
    report = lift_test_report(mmm, read_lift_tests(tmp_path / "lift.csv", cfg.channels))  # the delayed carry-over counted after each test, as the truth does
    assert report["used"].all() and report["measured_in_hdi"].all(), report.to_string()


@pytest.mark.slow
def test_the_comparison_picks_the_generating_families_and_the_wrong_family_fails_the_recovery_gate():
    """Weibull + Hill data, candidates geometric + logistic and Weibull + Hill: the wrong family fits the weeks (in-sample
    fit and convergence within the gates) yet its response curve is off by far more than the gate allows (measured
    35-38 % on three seeds, benchmarks/families.py), and its ELPD is lower by more than 2 SE."""
    cfg = load_config(FAMILIES / "weibull_hill.yaml")
    raw = merged(cfg.model_dump(mode="json"), {"model": {"candidates": {
        "geometric_logistic": {"adstock": {"family": "geometric"}, "saturation": {"family": "logistic"}},
        "weibull_hill": {},
    }}})
    cfg = MMMConfig.model_validate(raw)
    frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
    choice = compare_specifications(cfg, weekly_features(cfg, frame), truth, print).choice
    table = choice.table.set_index("candidate")
    assert choice.selected == "weibull_hill" and table["selected"].sum() == 1, choice.reason
    wrong, right = table.loc["geometric_logistic"], table.loc["weibull_hill"]
    assert right["passed_gates"] and not wrong["passed_gates"]
    assert "response_curve_recovery" in wrong["failed_gates"]
    assert "in_sample_r2" not in wrong["failed_gates"] and "max_rhat" not in wrong["failed_gates"]
    assert right["elpd_diff"] == 0 and -wrong["elpd_diff"] > 2 * wrong["diff_se"]
    assert (table["parameters"] == [11, 17]).all()
    assert choice.reason.startswith("weibull_hill is the only candidate that passes every gate (geometric_logistic "
                                    "failed response_curve_recovery"), choice.reason
