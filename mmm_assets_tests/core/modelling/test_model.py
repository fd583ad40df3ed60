"""The model core on one small fit: progress, diagnostics, predictions, persistence, contributions, holdout."""

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mmm_assets.core import variables
from mmm_assets.core.config import SamplerConfig, load_config
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.decisions.contributions import (
    BASELINE,
    PREDICTED,
    weekly_contributions,
    wide_means,
)
from mmm_assets.core.evaluation.metrics import r2
from mmm_assets.core.inference import progress as progress_core
from mmm_assets.core.inference import sampling as sampling_core
from mmm_assets.core.modelling import fitting as fitting_core
from mmm_assets.core.modelling import forecast as forecast_core
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.modelling import posterior as posterior_core
from mmm_assets.core.stores.duckdb_store import DiskSpaceError
from mmm_assets.core.synthetic.generator import generate
from mmm_assets_tests.conftest import SMALL, merge, write_scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(small_fit):
    return small_fit.cfg, small_fit.features, small_fit.truth, small_fit.result, small_fit.messages


def test_fit_reports_progress_and_diagnostics(fitted):
    cfg, features, _, result, messages = fitted
    assert result.sampler == "numpyro"
    assert messages[0].startswith(f"fitting {len(features)} weeks x 3 channels with numpyro")
    assert messages[-1].startswith(f"fit done in {result.wall_seconds:.1f} s ({cfg.sampler.chains} x 250 draws, "
                                   "from the Laplace approximation at the mode)")
    d = result.diagnostics
    assert d.divergences == 0 and 1.0 <= d.max_rhat < 1.05 and d.min_ess_bulk > 50
    assert result.mmm.idata.posterior.sizes["draw"] == cfg.sampler.draws


def test_in_sample_prediction_fits_the_data(fitted):
    _, features, _, result, _ = fitted
    frame = forecast_core.in_sample_prediction(result.mmm, features)
    assert len(frame) == len(features)
    assert (frame["predicted_hdi_low"] <= frame["predicted_mean"]).all()
    assert (frame["predicted_mean"] <= frame["predicted_hdi_high"]).all()
    assert r2(frame["actual"], frame["predicted_mean"]) > 0.99


def test_posterior_parameters_near_the_truth(fitted):
    _, _, truth, result, _ = fitted
    table = posterior_core.posterior_parameters(result.mmm).set_index(["channel", "parameter"])
    for channel, row in truth.parameters.iterrows():
        assert table.loc[(channel, "saturation_lam"), "estimate"] == pytest.approx(row["saturation_lam"], rel=0.1)
        assert table.loc[(channel, "adstock_alpha"), "estimate"] == pytest.approx(row["adstock_alpha"], abs=0.05)


def test_save_is_atomic_and_never_overwrites(fitted, tmp_path):
    _, _, _, result, _ = fitted
    path = persistence_core.save_model(result.mmm, tmp_path / "models" / "m.nc")
    with pytest.raises(FileExistsError):
        persistence_core.save_model(result.mmm, path)
    loaded = persistence_core.load_model(path)
    assert np.allclose(
        loaded.idata.posterior["saturation_lam"].values, result.mmm.idata.posterior["saturation_lam"].values
    )
    assert "posterior_predictive" in loaded.idata


def test_failed_save_leaves_no_file(fitted, tmp_path, monkeypatch):
    _, _, _, result, _ = fitted

    def disk_fills(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(persistence_core, "_write_all", disk_fills)
    models = tmp_path / "models"
    with pytest.raises(DiskSpaceError, match=r"models directory .* had no room .*\[Errno 28\] No space left"):
        persistence_core.save_model(result.mmm, models / "m.nc")
    assert list(models.iterdir()) == []


def test_saved_file_is_the_librarys_own(fitted, tmp_path):
    """save_model builds the netCDF in memory instead of calling ``mmm.save``: the file must be the one the
    library writes (same groups, variables, attributes), or ``MMM.load`` would rebuild another model."""
    _, _, _, result, _ = fitted
    ours = persistence_core.save_model(result.mmm, tmp_path / "ours.nc")
    result.mmm.save(str(tmp_path / "library.nc"))
    with xr.open_datatree(ours) as got, xr.open_datatree(tmp_path / "library.nc") as expected:
        assert got.identical(expected)


def test_load_missing_model_says_which_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nc does not exist"):
        persistence_core.load_model(tmp_path / "nope.nc")


def test_contributions_add_up_to_the_prediction(fitted):
    cfg, features, truth, result, _ = fitted
    long = weekly_contributions(result.mmm)
    assert set(long["component"]) == {*cfg.channels, BASELINE, PREDICTED}
    assert (long["hdi_low"] <= long["mean"] + 1e-9).all() and (long["mean"] <= long["hdi_high"] + 1e-9).all()
    wide = wide_means(long)
    assert np.allclose(wide[[*cfg.channels, BASELINE]].sum(axis=1), wide[PREDICTED], rtol=1e-9)
    prediction = forecast_core.in_sample_prediction(result.mmm, features)
    assert np.allclose(wide[PREDICTED], prediction["predicted_mean"], rtol=0.01)
    # the recovered baseline is the true intercept, within 5 %
    assert wide[BASELINE].mean() == pytest.approx(truth.intercept * truth.outcome_scale, rel=0.05)


def test_holdout_reweights_the_fit_and_agrees_with_a_refit(fitted):
    cfg, features, _, result, _ = fitted
    messages: list[str] = []
    psis = forecast_core.holdout_forecast(cfg, features, 6, report=messages.append, fitted=result.mmm)
    refit = forecast_core.holdout_forecast(cfg, features, 6)
    assert psis.method == "psis" and psis.fit is None and psis.pareto_k <= cfg.validation.holdout_pareto_k_max
    assert "no refit" in messages[0]
    assert refit.method == "refit" and refit.pareto_k is None
    assert refit.fit.mmm.idata.fit_data.sizes["date"] == len(features) - 6
    for forecast in (psis, refit):
        assert list(forecast.frame["date"]) == list(features["date"].iloc[-6:])
        assert np.all(np.abs(forecast.frame["predicted_mean"] / forecast.frame["actual"] - 1) < 0.05)
        assert (forecast.frame["predicted_hdi_low"] < forecast.frame["predicted_hdi_high"]).all()
    # the reweighted posterior forecasts what the refit forecasts, to well within the forecasts' own spread
    gap = np.abs(psis.frame["predicted_mean"] - refit.frame["predicted_mean"])
    width = refit.frame["predicted_hdi_high"] - refit.frame["predicted_hdi_low"]
    assert (gap < 0.5 * width).all()


def test_holdout_refits_when_the_pareto_k_is_too_high(fitted, monkeypatch):
    cfg, features, _, result, _ = fitted
    uneven = forecast_core.Reweighted(frame=features.iloc[-6:], pareto_k=0.93, ess=3.0)
    monkeypatch.setattr(forecast_core, "leave_future_out", lambda *args: uneven)
    messages: list[str] = []
    forecast = forecast_core.holdout_forecast(cfg, features, 6, report=messages.append, fitted=result.mmm)
    assert forecast.method == "refit" and forecast.pareto_k == 0.93 and forecast.fit is not None
    assert messages[0] == (
        "holdout: Pareto k 0.93 > 0.7: the reweighted posterior cannot stand in for a fit without the last weeks"
    )


def test_pointwise_log_likelihood_is_pymcs(fitted):
    import pymc as pm

    result = fitted[3]
    ours = forecast_core.pointwise_log_likelihood(result.mmm)
    theirs = pm.compute_log_likelihood(
        result.mmm.idata, var_names=["y"], model=result.mmm.model, extend_inferencedata=False, progressbar=False
    )["y"]
    np.testing.assert_allclose(ours.transpose(*theirs.dims).to_numpy(), theirs.to_numpy(), rtol=1e-9, atol=1e-9)


def test_numpyro_deterministics_come_from_the_sampler_and_are_pymcs(fitted):
    """A numpyro fit takes the deterministics from PyMC's vectorised JAX post-processing, not from PyMC-Marketing's
    recompute (one draw at a time in Python): those of the parameters are the values PyMC computes from their draws;
    the target's (``y_original_scale``) is the observed target, as PyMC's own sampler gives it (the recompute drew
    it afresh; predictions come from the posterior predictive either way)."""
    import pymc as pm
    from pytensor.graph.traversal import ancestors

    _, features, _, result, _ = fitted
    mmm = result.mmm
    # PyMC-Marketing's own switch (a class attribute of its model builder), which sampling.sample sets: a library
    # that dropped or renamed it would recompute them again, and a pooled fit's var_names would reach pm.sample twice
    assert any("_recompute_deterministics" in vars(cls) for cls in type(mmm).__mro__)
    assert mmm._recompute_deterministics is False
    posterior = mmm.idata.posterior
    assert {type(v.variable._data) for v in posterior.data_vars.values()} == {np.ndarray}  # not JAX's arrays
    observed = set(mmm.model.observed_RVs)
    of_target = [d.name for d in mmm.model.deterministics if observed & set(ancestors([d]))]
    of_parameters = [d.name for d in mmm.model.deterministics if d.name not in of_target]
    assert of_target == [variables.PREDICTED] and "channel_contribution" in of_parameters
    assert set(of_parameters) <= set(posterior.data_vars)
    recomputed = pm.compute_deterministics(
        posterior.to_dataset()[[rv.name for rv in mmm.model.free_RVs]], var_names=of_parameters, model=mmm.model,
        progressbar=False,
    )
    for name in of_parameters:
        np.testing.assert_allclose(posterior[name].to_numpy(), recomputed[name].to_numpy(), rtol=1e-9, atol=1e-12)
    target = posterior[variables.PREDICTED].transpose("chain", "draw", "date").to_numpy()
    np.testing.assert_allclose(target, np.broadcast_to(features["y"].to_numpy(), target.shape), rtol=1e-9)


def test_fit_samples_again_until_the_ess_target(tmp_path):
    # a fit that adapts its mass matrix (a Laplace start short of the gates samples more chains, as a warm one does)
    sampler = {"draws": 20, "tune": 150, "max_draws": 400, "cold_start": "adapt"}
    cfg = load_config(write_scenario(tmp_path, merge(SMALL, {"sampler": sampler})))
    frame, _ = generate(cfg.data.synthetic)
    features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "test")
    messages: list[str] = []
    result = fitting_core.fit(cfg, features, report=messages.append, in_sample_predictive=False)
    again = [m for m in messages if "sampling again with" in m]
    assert again and again[0].startswith("fit: smallest ESS")
    assert 20 < result.draws <= 400 and result.mmm.idata.posterior.sizes["draw"] == result.draws
    d = result.diagnostics
    assert min(d.min_ess_bulk, d.min_ess_tail) >= 100 or result.draws == 400


def test_draws_grow_until_the_gates_can_pass_within_the_ceiling(monkeypatch):
    class Fake:
        idata = None

        def __init__(self) -> None:
            self.calls: list[tuple[int, int]] = []

        def fit(self, X, y, draws, random_seed, **kwargs) -> None:
            self.calls.append((draws, random_seed))

    found = iter([
        sampling_core.Diagnostics(0, 1.03, 900.0, 900.0, "a"),
        sampling_core.Diagnostics(0, 1.005, 300.0, 500.0, "a"),
        sampling_core.Diagnostics(0, 1.004, 700.0, 650.0, "a"),
    ])
    monkeypatch.setattr(sampling_core, "diagnose", lambda idata, parameters: next(found))
    s = SamplerConfig(name="pymc", chains=2, draws=100, tune=100, target_accept=0.9, seed=7, max_draws=1000)
    fake, messages = Fake(), []
    result = sampling_core.sample(fake, None, None, s, "pymc", [], messages.append, in_sample_predictive=False,
                               ess_target=400, rhat_target=1.01)
    # R-hat too high: twice the draws; then ESS 300 of 400: 200 x 400 / 300 x 1.25 = 333.3 -> 334; each a new seed
    assert fake.calls == [(100, 7), (200, 8), (334, 9)] and result.draws == 334
    assert messages[0].startswith("fit: max R-hat 1.0300 > 1.01 after ")
    assert messages[1].startswith("fit: smallest ESS 300 < 400 after ")
    capped = iter([sampling_core.Diagnostics(0, 1.0, 50.0, 50.0, "a")] * 3)
    monkeypatch.setattr(sampling_core, "diagnose", lambda idata, parameters: next(capped))
    fake = Fake()
    sampling_core.sample(fake, None, None, s, "pymc", [], in_sample_predictive=False, ess_target=400)
    assert [draws for draws, _ in fake.calls] == [100, 1000]  # never beyond max_draws, and it stops there


def test_numpyro_progress_is_a_heartbeat(monkeypatch):
    monkeypatch.setattr(progress_core, "PROGRESS_EVERY_S", 0.02)
    messages: list[str] = []
    with progress_core.sampler_progress("numpyro", messages.append, 100) as extra:
        time.sleep(0.15)
    count = len(messages)
    time.sleep(0.1)
    assert extra == {} and count >= 2 and len(messages) == count  # it stops with the sampling
    assert messages[0].startswith("sampling with numpyro: ") and messages[0].endswith(" s")


def test_numpyro_fits_keep_their_compiled_code(fitted):
    import jax

    folder = Path(jax.config.jax_compilation_cache_dir)
    assert folder == sampling_core.persistent_jax_cache() and any(folder.iterdir())


def test_unavailable_sampler_falls_back_to_pymc(monkeypatch):
    monkeypatch.setattr(sampling_core.importlib.util, "find_spec", lambda name: None)
    messages: list[str] = []
    assert sampling_core.available_sampler("nutpie", messages.append) == "pymc"
    assert sampling_core.available_sampler("numpyro") == "pymc"
    assert messages == ["sampler 'nutpie' is not installed; using PyMC's own NUTS sampler instead"]


@pytest.mark.parametrize("sampler", ["pymc", "nutpie"])
def test_sampler_reports_progress(tmp_path, sampler):
    cfg = load_config(write_scenario(tmp_path, merge(SMALL, {"sampler": {"name": sampler, "chains": 1, "draws": 40,
                                                                          "tune": 40}})))
    frame, _ = generate(cfg.data.synthetic)
    features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "test")
    messages: list[str] = []
    result = fitting_core.fit(cfg, features, report=messages.append, in_sample_predictive=False)
    assert result.sampler == sampler
    assert "sampling: 80/80 draws" in "\n".join(messages)
