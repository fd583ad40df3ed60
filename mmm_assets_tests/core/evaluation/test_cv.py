"""Time-slice cross-validation: the CRPS estimator, the folds it picks, and two real refit-and-forecast folds."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from mmm_assets.core.config import ConfigError
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.evaluation.cv import cross_validate, cv_gates, fold_origins
from mmm_assets.core.evaluation.metrics import crps
from mmm_assets.core.presentation.plots import cv_plot
from mmm_assets.core.synthetic.generator import generate


def normal_crps(mu: float, sigma: float, y: np.ndarray) -> np.ndarray:
    """Closed form: sigma * (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)), z = (y - mu) / sigma."""
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_crps_matches_the_normal_closed_form():
    mu, sigma, n = 3.0, 2.0, 20_001
    samples = mu + sigma * norm.ppf((np.arange(1, n + 1) - 0.5) / n)  # evenly spaced quantiles: no Monte Carlo noise
    y = np.array([mu, mu + 0.3 * sigma, mu - 2 * sigma, mu + 5 * sigma])
    got = crps(np.repeat(samples[:, None], len(y), axis=1), y)
    assert got == pytest.approx(normal_crps(mu, sigma, y), rel=1e-3)


def test_crps_equals_the_pairwise_definition():
    rng = np.random.default_rng(3)
    samples, y = rng.gamma(2.0, 5.0, size=(60, 4)), np.array([1.0, 10.0, 30.0, -2.0])
    pairwise = np.abs(samples[:, None, :] - samples[None, :, :]).mean(axis=(0, 1))
    assert crps(samples, y) == pytest.approx(np.abs(samples - y).mean(axis=0) - 0.5 * pairwise, rel=1e-12)
    # one sample is a point forecast: the score is the absolute error
    assert crps(np.array([[4.0, 4.0]]), np.array([1.0, 6.5])) == pytest.approx([3.0, 2.5])


def test_crps_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(n_samples, n_obs\)"):
        crps(np.zeros((10, 3)), np.zeros(4))


def test_folds_are_anchored_at_the_end_and_keep_the_most_recent(small_config):
    cv = small_config({"validation": {"cross_validation": {"initial_weeks": 60, "horizon_weeks": 8,
                                                           "step_weeks": 13, "max_folds": None}}}).validation
    origins = fold_origins(104, cv.cross_validation)
    assert origins == [70, 83, 96]  # the last fold forecasts weeks 96..103, each earlier one 13 weeks before
    limited = cv.cross_validation.model_copy(update={"max_folds": 2})
    assert fold_origins(104, limited) == [83, 96]
    with pytest.raises(ValueError, match="initial_weeks \\+ horizon_weeks = 60 \\+ 8 = 68 weeks, the data has 67"):
        fold_origins(67, cv.cross_validation)


def test_cv_config_is_checked(small_config):
    with pytest.raises(ConfigError, match="initial_weeks \\(40\\) must be at least validation.min_weeks \\(52\\)"):
        small_config({"validation": {"cross_validation": {"enabled": True, "initial_weeks": 40}}})
    assert small_config({"validation": {"cross_validation": {"initial_weeks": 40}}})  # disabled: not checked
    with pytest.raises(ConfigError, match="cross_validation.horizon_weeks"):
        small_config({"validation": {"cross_validation": {"horizon_weeks": 0}}})
    cfg = small_config()
    assert cfg.validation.cv_mape_max_pct == cfg.validation.thresholds.oos_mape_max_pct
    own = small_config({"validation": {"cross_validation": {"mape_max_pct": 0.7}}})
    assert own.validation.cv_mape_max_pct == 0.7


@pytest.mark.slow
def test_cross_validate_two_folds(small_config):
    overrides = {
        "validation": {"cross_validation": {"enabled": True, "initial_weeks": 78, "horizon_weeks": 8,
                                            "step_weeks": 13, "max_folds": 2, "draws": 250}},
    }
    cfg = small_config(overrides)
    frame, _ = generate(cfg.data.synthetic)
    features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "test")
    messages: list[str] = []
    result = cross_validate(cfg, features, messages.append)

    folds = result.folds
    assert list(folds["fold"]) == [1, 2] and list(folds["train_weeks"]) == [83, 96] and (folds["weeks"] == 8).all()
    assert folds["test_end"].iloc[-1] == features["date"].iloc[-1]
    assert (folds["train_end"] < folds["test_start"]).all()
    assert messages[0].startswith("fold 1/2: fitting 83 weeks")
    assert any(m.startswith("fold 2/2: fitting 96 weeks") for m in messages)
    assert sum(m.startswith("fit done") for m in messages) == 2  # the refits' own reports come through the same callback

    # each fold forecasts exactly its own unseen weeks, and does it well on this low-noise scenario
    for row in folds.itertuples(index=False):
        rows = result.forecasts[result.forecasts["fold"] == row.fold]
        expected = features["date"].iloc[row.train_weeks: row.train_weeks + row.weeks]
        assert list(rows["date"]) == list(expected)
        assert list(rows["actual"]) == list(features["y"].iloc[row.train_weeks: row.train_weeks + row.weeks])
        assert rows["crps"].mean() == pytest.approx(row.crps)
        # far better than the naive forecast "a week like any training week" (the training targets as the draws)
        train_y = features["y"].iloc[: row.train_weeks].to_numpy()
        naive = crps(np.repeat(train_y[:, None], len(rows), axis=1), rows["actual"].to_numpy()).mean()
        assert 0 < row.crps < 0.25 * naive
        assert row.crps_rel_pct == pytest.approx(100 * row.crps / rows["actual"].mean())
    assert result.summary["cv_folds"] == 2
    assert result.summary["cv_mean_mape_pct"] == pytest.approx(folds["mape_pct"].mean())
    assert result.summary["cv_max_mape_pct"] == pytest.approx(folds["mape_pct"].max())
    assert result.summary["cv_mean_mape_pct"] < cfg.validation.cv_mape_max_pct
    assert result.passed and [g.gate for g in result.gates] == ["cv_mean_mape"]

    # the same summary against a threshold it cannot meet fails, and a configured CRPS gate is added
    strict = small_config({**overrides, "validation": {"cross_validation": {
        **overrides["validation"]["cross_validation"], "mape_max_pct": 0.001, "crps_rel_max_pct": 0.001}}})
    gates = cv_gates(result.summary, strict)
    assert [g.gate for g in gates] == ["cv_mean_mape", "cv_mean_crps_rel"]
    assert not any(g.passed for g in gates) and "is not <= 0.001" in gates[0].note

    history = features.rename(columns={"y": "actual"})
    png = cv_plot(result.forecasts, folds, history, cfg.validation.cv_mape_max_pct)
    assert png.startswith(b"\x89PNG")
