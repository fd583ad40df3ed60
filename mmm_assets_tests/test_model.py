"""The model core on one small fit: progress, diagnostics, predictions, persistence, contributions, holdout."""

import numpy as np
import pytest

from mmm_assets.core import model as model_core
from mmm_assets.core.config import load_config
from mmm_assets.core.contributions import (
    BASELINE,
    PREDICTED,
    weekly_contributions,
    wide_means,
)
from mmm_assets.core.features import validate_features
from mmm_assets.core.generator import generate
from mmm_assets.core.metrics import r2
from mmm_assets_tests.conftest import SMALL, write_scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(small_fit):
    return small_fit.cfg, small_fit.features, small_fit.truth, small_fit.result, small_fit.messages


def test_fit_reports_progress_and_diagnostics(fitted):
    cfg, features, _, result, messages = fitted
    assert result.sampler == "nutpie"
    assert messages[0].startswith(f"fitting {len(features)} weeks x 3 channels with nutpie")
    assert any(m.startswith("sampling:") for m in messages)
    assert messages[-1].startswith("fit done")
    total = cfg.sampler.chains * (cfg.sampler.draws + cfg.sampler.tune)
    assert f"sampling: {total}/{total} draws" in "\n".join(messages)
    d = result.diagnostics
    assert d.divergences == 0 and 1.0 <= d.max_rhat < 1.05 and d.min_ess_bulk > 50
    assert result.mmm.idata.posterior.sizes["draw"] == cfg.sampler.draws


def test_in_sample_prediction_fits_the_data(fitted):
    _, features, _, result, _ = fitted
    frame = model_core.in_sample_prediction(result.mmm, features)
    assert len(frame) == len(features)
    assert (frame["predicted_hdi_low"] <= frame["predicted_mean"]).all()
    assert (frame["predicted_mean"] <= frame["predicted_hdi_high"]).all()
    assert r2(frame["actual"], frame["predicted_mean"]) > 0.99


def test_posterior_parameters_near_the_truth(fitted):
    _, _, truth, result, _ = fitted
    table = model_core.posterior_parameters(result.mmm).set_index(["channel", "parameter"])
    for channel, row in truth.parameters.iterrows():
        assert table.loc[(channel, "saturation_lam"), "estimate"] == pytest.approx(row["saturation_lam"], rel=0.1)
        assert table.loc[(channel, "adstock_alpha"), "estimate"] == pytest.approx(row["adstock_alpha"], abs=0.05)


def test_save_is_atomic_and_never_overwrites(fitted, tmp_path):
    _, _, _, result, _ = fitted
    path = model_core.save_model(result.mmm, tmp_path / "models" / "m.nc")
    with pytest.raises(FileExistsError):
        model_core.save_model(result.mmm, path)
    loaded = model_core.load_model(path)
    assert np.allclose(
        loaded.idata.posterior["saturation_lam"].values, result.mmm.idata.posterior["saturation_lam"].values
    )
    assert "posterior_predictive" in loaded.idata


def test_failed_save_leaves_no_file(fitted, tmp_path, monkeypatch):
    _, _, _, result, _ = fitted

    def broken_save(fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"half a netCDF")
        raise OSError("No space left on device")

    monkeypatch.setattr(result.mmm, "save", broken_save)
    models = tmp_path / "models"
    with pytest.raises(OSError, match="No space left"):
        model_core.save_model(result.mmm, models / "m.nc")
    assert list(models.iterdir()) == []


def test_load_missing_model_says_which_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc does not exist"):
        model_core.load_model(tmp_path / "nope.nc")


def test_contributions_add_up_to_the_prediction(fitted):
    cfg, features, truth, result, _ = fitted
    long = weekly_contributions(result.mmm)
    assert set(long["component"]) == {*cfg.channels, BASELINE, PREDICTED}
    assert (long["hdi_low"] <= long["mean"] + 1e-9).all() and (long["mean"] <= long["hdi_high"] + 1e-9).all()
    wide = wide_means(long)
    assert np.allclose(wide[[*cfg.channels, BASELINE]].sum(axis=1), wide[PREDICTED], rtol=1e-9)
    prediction = model_core.in_sample_prediction(result.mmm, features)
    assert np.allclose(wide[PREDICTED], prediction["predicted_mean"], rtol=0.01)
    # the recovered baseline is the true intercept, within 5 %
    assert wide[BASELINE].mean() == pytest.approx(truth.intercept * truth.outcome_scale, rel=0.05)


def test_holdout_forecast_predicts_unseen_weeks(fitted):
    cfg, features, _, _, _ = fitted
    frame, holdout_fit = model_core.holdout_forecast(cfg, features, 6)
    assert list(frame["date"]) == list(features["date"].iloc[-6:])
    assert holdout_fit.mmm.idata.fit_data.sizes["date"] == len(features) - 6
    assert np.all(np.abs(frame["predicted_mean"] / frame["actual"] - 1) < 0.05)


def test_unavailable_sampler_falls_back_to_pymc(monkeypatch):
    monkeypatch.setattr(model_core.importlib.util, "find_spec", lambda name: None)
    assert model_core.available_sampler("nutpie") == "pymc"
    assert model_core.available_sampler("numpyro") == "pymc"


def test_pymc_sampler_reports_progress(tmp_path):
    cfg = load_config(write_scenario(tmp_path, {**SMALL, "sampler": {"name": "pymc", "chains": 1, "draws": 40,
                                                                       "tune": 40}}))
    frame, _ = generate(cfg.data.synthetic)
    features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "test")
    messages: list[str] = []
    result = model_core.fit(cfg, features, report=messages.append, in_sample_predictive=False)
    assert result.sampler == "pymc"
    assert "sampling: 80/80 draws" in "\n".join(messages)
