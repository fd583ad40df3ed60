"""Partial pooling across markets: the hierarchical fit, its single-market views, and what pooling buys a market
with little information (config/markets_pooled.yaml: `west` is ten times noisier, with hardly varying spend). The
markets cover different weeks here (south opens a quarter after the others; in the controls scenario south's
history ends earlier), so every pooled fit of this module also runs the padding of mmm_assets.core.modelling.panel."""

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest
import xarray as xr
import yaml
from pymc.model.transform.optimization import freeze_dims_and_data

from mmm_assets.core.config import DATE_COLUMN, ConfigError, MMMConfig, load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.data.calendar import with_calendar
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.decisions import contributions, roas
from mmm_assets.core.errors import InputError
from mmm_assets.core.evaluation import metrics
from mmm_assets.core.inference import laplace
from mmm_assets.core.inference import sampling as sampling_core
from mmm_assets.core.inference.compiling import QUICK_MODE
from mmm_assets.core.modelling import build as build_core
from mmm_assets.core.modelling import calibration, panel, pooling
from mmm_assets.core.modelling import fitting as fitting_core
from mmm_assets.core.modelling import forecast as forecast_core
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.modelling import posterior as posterior_core
from mmm_assets.core.modelling import priors as priors_core
from mmm_assets.core.synthetic.generator import GroundTruth, generate
from mmm_assets.core.variables import CONTRIBUTIONS, PREDICTED
from mmm_assets_tests.conftest import SMALL
from mmm_assets_tests.core.modelling.test_priors import _no_traceback

SCENARIO = PROJECT_DIR / "config" / "markets_pooled.yaml"
#: Two markets with market-level controls (a price per market, a trend, an event).
CONTROLS = PROJECT_DIR / "config" / "markets_pooled_controls.yaml"
#: The scenario's data-poor market.
POOR = "west"
#: Standard errors of a difference of two posterior-predictive means allowed before calling it more than noise.
NOISE_SE = 5.0
#: The pooled fixture's market that opens later, and when: 12 weeks after the others (2019-01-07). (Opening 25
#: weeks later recovers as well but its fit falls back from the Laplace start to a cold refit: ~100 s instead of
#: ~15 s, docs/performance.md "Pooled markets over different weeks".)
LATE, OPENS = "south", "2019-04-01"
#: The controls holdout test's market whose history ends earlier, and its last week: 8 weeks before north's.
EARLY, ENDS = "south", "2020-11-02"


@dataclass(frozen=True)
class PooledFit:
    cfg: MMMConfig
    features: dict[str, pd.DataFrame]
    truths: dict[str, GroundTruth]
    result: sampling_core.FitResult
    messages: list[str]

    @property
    def mmm(self):
        return self.result.mmm


def scenario(folder: Path, extends: Path = SCENARIO, **overrides) -> MMMConfig:
    """A pooled scenario (config/markets_pooled.yaml by default) cut to the small test scenario (104 weeks, 2 x 250
    draws, small-test gates), its outputs under ``folder``, with ``overrides`` (top-level sections) laid over it."""
    path = folder / f"{extends.stem}_small.yaml"
    small = {key: SMALL[key] for key in ("data", "sampler", "validation")}
    paths = {"duckdb": str(folder / "mmm.duckdb"), "models_dir": str(folder / "models")}
    path.write_text(yaml.safe_dump({"extends": str(extends), "scenario": f"{extends.stem}_small", **small,
                                    "paths": paths, **overrides}))
    return load_config(path)


def market_features(cfg: MMMConfig, market: str) -> tuple[pd.DataFrame, GroundTruth]:
    narrowed = cfg.for_market(market)
    frame, truth = generate(narrowed.data.synthetic, narrowed.model.calendar)
    frame = with_calendar(frame, narrowed)
    return validate_features(frame, narrowed.channels, narrowed.controls, narrowed.validation.min_weeks, market), truth


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> PooledFit:
    # max_draws as in production (SMALL's null never samples again): a start short of an ESS gate draws more chains.
    cfg = scenario(tmp_path_factory.mktemp("pooled"), markets={"data": {LATE: {"synthetic": {"start_date": OPENS}}}},
                   sampler={**SMALL["sampler"], "max_draws": 500})
    data = {m: market_features(cfg, m) for m in cfg.market_names}
    features = {m: f for m, (f, _) in data.items()}
    messages: list[str] = []
    result = pooling.fit_pooled(cfg, features, report=messages.append)
    return PooledFit(cfg, features, {m: t for m, (_, t) in data.items()}, result, messages)


def lam_errors(mmm, truth: GroundTruth) -> pd.Series:
    table = metrics.recovery(posterior_core.posterior_parameters(mmm), truth.parameters)
    return table[table["parameter"] == "saturation_lam"].set_index("channel")["error"]


def test_scenario_is_pooled_and_west_is_data_poor() -> None:
    cfg = load_config(SCENARIO)
    assert cfg.pooled and POOR in cfg.market_names
    poor, rich = cfg.for_market(POOR).data.synthetic, cfg.for_market("north").data.synthetic
    assert poor.noise_sigma >= 5 * rich.noise_sigma
    for name, channel in poor.channels.items():
        assert channel.spend_min / channel.spend_max > 3 * rich.channels[name].spend_min / rich.channels[name].spend_max


def test_pooled_fit_converges_with_per_market_scaling(pooled: PooledFit) -> None:
    t, d = pooled.cfg.validation.thresholds, pooled.result.diagnostics
    assert d.max_rhat <= t.rhat_max, d
    assert d.min_ess_bulk >= t.ess_bulk_min and d.min_ess_tail >= t.ess_tail_min, d
    assert d.divergences <= t.divergences_max, d
    assert pooling.pooled_markets(pooled.mmm) == pooled.cfg.market_names
    assert any("pooled fit done" in m for m in pooled.messages)
    assert "between-market spreads: the stated ones (markets.spread auto learns them from 5 markets on; there are 3)" \
        in pooled.messages
    assert f"{LATE} {OPENS}..2020-12-28 (92 weeks)" in next(m for m in pooled.messages if "different weeks" in m)
    assert len(pooled.features[LATE]) == len(pooled.features["north"]) - 12
    scale = pooled.mmm.idata.constant_data["channel_scale"]
    for market, frame in pooled.features.items():  # each market max-scaled on its own, as a separate model is
        channels = list(pooled.mmm.channel_columns)
        own = scale.sel(market=market, channel=channels).to_numpy()
        np.testing.assert_allclose(own, frame[channels].max().to_numpy())


@pytest.mark.parametrize("market", ["north", LATE])
def test_view_reproduces_the_pooled_model_for_its_market(pooled: PooledFit, market: str) -> None:
    view = pooling.market_view(pooled.mmm, market)
    features = pooled.features[market]
    own = pd.DatetimeIndex(features[DATE_COLUMN])
    for group in ("posterior", "posterior_predictive", "observed_data", "constant_data", "fit_data"):
        dates = view.idata[group].to_dataset().indexes.get(DATE_COLUMN)
        assert dates is None or dates.equals(own), group  # the market's own weeks only
    np.testing.assert_array_equal(
        view.idata.posterior["saturation_lam"].to_numpy(),
        pooled.mmm.idata.posterior["saturation_lam"].sel(market=market).to_numpy(),
    )
    X, _ = build_core.split_xy(features)
    fresh = view.sample_posterior_predictive(
        X, var_names=[PREDICTED, CONTRIBUTIONS], extend_idata=False, combined=False,
        progressbar=False, random_seed=7,
    )
    # The view's own graph (its scales, transforms and parameters) gives the pooled model's channel contributions: a
    # market that opens later carries nothing over from the padded weeks before it, as a separate model would not.
    # The pooled posterior keeps its parameters only (kept_in_posterior); its graph gives any market's contributions.
    assert CONTRIBUTIONS not in pooled.mmm.idata.posterior
    every = pm.compute_deterministics(pooled.mmm.idata.posterior, var_names=[CONTRIBUTIONS], model=pooled.mmm.model,
                                      progressbar=False)
    pooled_contrib = every[CONTRIBUTIONS].sel(market=market, date=own)
    for contrib in (fresh[CONTRIBUTIONS], view.idata.posterior[CONTRIBUTIONS]):  # recomputed, and kept by the view
        np.testing.assert_allclose(contrib.transpose(*pooled_contrib.dims).to_numpy(), pooled_contrib.to_numpy(),
                                   rtol=1e-6)
    bare = pooling.market_view(pooled.mmm, market, contributions=False)  # what a forecast of new weeks takes
    assert CONTRIBUTIONS not in bare.idata.posterior and "saturation_lam" in bare.idata.posterior
    # ...and its prediction equals the pooled model's for that market within the noise of two predictive samples.
    stored = forecast_core.in_sample_prediction(view, features)
    draws = fresh[PREDICTED]
    mean = draws.mean(("chain", "draw")).to_numpy()
    se = draws.std(("chain", "draw")).to_numpy() / np.sqrt(draws.sizes["chain"] * draws.sizes["draw"])
    assert np.all(np.abs(mean - stored["predicted_mean"].to_numpy()) <= NOISE_SE * np.sqrt(2) * se)
    np.testing.assert_allclose(stored["actual"], features["y"])


def test_view_feeds_the_single_market_steps_and_round_trips(pooled: PooledFit, tmp_path: Path) -> None:
    view = pooling.market_view(pooled.mmm, POOR)
    features = pooled.features[POOR]
    table = roas.channel_roas(view, features)
    assert list(table["channel"]) == list(view.channel_columns)
    assert np.isfinite(table[["roas_mean", "mroas_mean", "contribution_mean"]].to_numpy()).all()
    assert (table["contribution_mean"] > 0).all()
    weekly = contributions.wide_means(contributions.weekly_contributions(view))
    parts = weekly[[*view.channel_columns, contributions.BASELINE]].sum(axis=1)
    np.testing.assert_allclose(parts, weekly[contributions.PREDICTED], rtol=1e-9)

    path = persistence_core.save_model(view, tmp_path / "west.nc")
    loaded = persistence_core.load_model(path)
    assert pooling.view_is_pooled(loaded) == POOR and pooling.view_is_pooled(pooled.mmm) is None
    pd.testing.assert_frame_equal(
        posterior_core.posterior_parameters(loaded), posterior_core.posterior_parameters(view)
    )
    pd.testing.assert_frame_equal(
        forecast_core.in_sample_prediction(loaded, features), forecast_core.in_sample_prediction(view, features)
    )
    read_back = posterior_core.fitted_features(loaded)
    pd.testing.assert_frame_equal(read_back, features[read_back.columns])
    pd.testing.assert_frame_equal(roas.channel_roas(loaded, features), table)

    # The pooled model itself round-trips too, and a view of the reloaded one is the same view; the reloaded model
    # still leaves the late market's padded weeks out of its likelihood (the same log-probability at a point).
    pooled_path = persistence_core.save_model(pooled.mmm, tmp_path / "pooled.nc")
    reloaded = persistence_core.load_model(pooled_path)
    for market in (POOR, LATE):
        again = pooling.market_view(reloaded, market)
        pd.testing.assert_frame_equal(posterior_core.posterior_parameters(again),
                                      posterior_core.posterior_parameters(pooling.market_view(pooled.mmm, market)))
    assert panel.market_span(reloaded, LATE) == (pd.Timestamp(OPENS), pd.Timestamp("2020-12-28"))
    assert [p.name for p in reloaded.model.potentials] == [p.name for p in pooled.mmm.model.potentials] != []
    point = reloaded.model.initial_point(0)
    assert float(reloaded.model.compile_logp()(point)) == float(pooled.mmm.model.compile_logp()(point))


def test_lambda_recovered_in_every_market(pooled: PooledFit) -> None:
    """The informative markets within the scenario's own gate (the single-market tolerance); the data-poor one within
    twice that: its true lambdas sit up to 9.5 % from the other markets' (linkedin 2.3 vs 2.1), and pulling a market
    with little information of its own towards the others is what pooling does."""
    gate = pooled.cfg.validation.thresholds.lam_rel_error_max
    for market in pooled.cfg.market_names:
        errors = lam_errors(pooling.market_view(pooled.mmm, market), pooled.truths[market])
        tolerance = 2 * gate if market == POOR else gate
        assert (errors <= tolerance).all(), (market, errors.to_dict())


def test_pooling_recovers_the_data_poor_market_better_than_fitting_it_alone(pooled: PooledFit) -> None:
    alone = fitting_core.fit(pooled.cfg.for_market(POOR), pooled.features[POOR])
    alone_errors = lam_errors(alone.mmm, pooled.truths[POOR])
    pooled_errors = lam_errors(pooling.market_view(pooled.mmm, POOR), pooled.truths[POOR])
    assert pooled_errors.mean() < alone_errors.mean(), (pooled_errors.to_dict(), alone_errors.to_dict())
    assert pooled_errors.max() < alone_errors.max(), (pooled_errors.to_dict(), alone_errors.to_dict())


def test_market_view_names_the_markets(pooled: PooledFit) -> None:
    with pytest.raises(ValueError, match=r"no market 'east'.*\['north', 'south', 'west'\]"):
        pooling.market_view(pooled.mmm, "east")
    with pytest.raises(ValueError, match="not a pooled model"):
        pooling.market_view(build_core.build_mmm(pooled.cfg), "north")


def small_frames() -> dict[str, pd.DataFrame]:
    """Two markets over the same ten weeks: a date, the target y and one channel, tv."""
    dates = pd.date_range("2024-01-01", periods=10, freq="W-MON")
    rng = np.random.default_rng(0)
    return {
        m: pd.DataFrame({DATE_COLUMN: dates, "y": rng.uniform(10, 20, 10), "tv": rng.uniform(1, 2, 10)})
        for m in ("north", "south")
    }


def test_pooled_holdout_with_market_level_controls_forecasts_every_market_and_recovers_each_markets_terms(
    tmp_path: Path,
) -> None:
    # config/markets_pooled_controls.yaml: a price with a different level, variation and effect per market, a trend
    # and an event; south's history ends 8 weeks before north's. One pooled refit without each market's own last
    # weeks does the holdout and is checked term by term
    cfg = scenario(tmp_path, CONTROLS, markets={"data": {EARLY: {"synthetic": {"end_date": ENDS}}}})
    data = {m: market_features(cfg, m) for m in cfg.market_names}
    features = {m: f for m, (f, _) in data.items()}
    assert "price" in features["north"] and "event_black_friday" in features["north"]
    assert features[EARLY][DATE_COLUMN].iloc[-1] == pd.Timestamp(ENDS) < features["north"][DATE_COLUMN].iloc[-1]
    weeks = cfg.validation.holdout_weeks
    messages: list[str] = []
    forecasts, refit = pooling.holdout_forecast_pooled(cfg, features, weeks, messages.append)
    assert any("different weeks" in m for m in messages)
    gate = cfg.validation.thresholds.oos_mape_max_pct
    for market, frame in features.items():
        forecast = forecasts[market]
        assert list(forecast[DATE_COLUMN]) == list(frame[DATE_COLUMN].iloc[-weeks:])
        trained = pd.DatetimeIndex(frame[DATE_COLUMN].iloc[:-weeks])
        assert panel.market_span(refit.mmm, market) == (trained[0], trained[-1])
        assert metrics.mape_pct(forecast["actual"], forecast["predicted_mean"]) <= gate, (market, forecast)
        inside = forecast["actual"].between(forecast["predicted_hdi_low"], forecast["predicted_hdi_high"])
        assert inside.sum() >= weeks / 2, (market, forecast)
        # the market's own price, trend and event effects (outcome units per unit, per year, per flagged week)
        view = pooling.market_view(refit.mmm, market)
        found = priors_core.term_estimates(view).set_index("term")
        truth = data[market][1].terms
        for term in ("price", "trend", "event_black_friday"):
            true = float(truth.loc[term, "effect_per_unit"])
            assert found.loc[term, "effect_per_unit"] == pytest.approx(true, rel=0.1), (market, term, found)
        # the view's terms, recomputed from the market's data with its own centres and scales, are the pooled ones
        X, _ = build_core.split_xy(frame.iloc[:-weeks])
        name = f"{priors_core.PREFIX}_effect_contribution"
        recomputed = view.sample_posterior_predictive(
            X, var_names=[name], include_last_observations=False, extend_idata=False, combined=False,
            progressbar=False,
        )[name]
        pooled_terms = pm.compute_deterministics(refit.mmm.idata.posterior, var_names=[name], model=refit.mmm.model,
                                                 progressbar=False)[name]
        pooled_terms = pooled_terms.sel({pooling.MARKET_DIM: market, DATE_COLUMN: trained})
        for terms in (recomputed, view.idata.posterior[name]):  # from the market's data, and kept by the view
            np.testing.assert_allclose(terms.transpose(*pooled_terms.dims).values, pooled_terms.values, rtol=1e-9,
                                       atol=1e-12)
    # saved and loaded (as the pooled model asset does), every market keeps its own terms
    persistence_core.save_model(refit.mmm, tmp_path / "pooled.nc")
    loaded = persistence_core.load_model(tmp_path / "pooled.nc")
    price = {m: float(priors_core.term_estimates(pooling.market_view(loaded, m)).set_index("term").loc[
        "price", "effect_per_unit"]) for m in ("north", "south")}
    # north's effect per unit is twice south's (-0.3 x 100k against -0.15 x 60k)
    assert price["north"] < 2 * price["south"] < 0
    # a market too short for the holdout refit is named with its weeks
    short = {**features, EARLY: features[EARLY].iloc[-(cfg.validation.min_weeks - 1):]}
    with pytest.raises(InputError, match=rf"needs at least {cfg.validation.min_weeks} weeks per market.*market "
                                         rf"'{EARLY}' has {cfg.validation.min_weeks - 1} weeks \(\d{{4}}-"):
        pooling.holdout_forecast_pooled(cfg, short, weeks)


@pytest.mark.parametrize("sign", ["negative", "free"])
def test_pooled_terms_compile_without_rewrite_failures_and_have_a_coefficient_per_market(
    tmp_path: Path, capsys, caplog, sign: str
) -> None:
    """The pooled model's terms, signed and all free (the layout whose term dim is exactly the free one, which once
    printed PyTensor rewrite tracebacks, issue 23), compile in the quick mode and JAX, frozen or not, silently."""
    path = tmp_path / "controls.yaml"
    layout = {"terms": {"price": {"sign": sign}}, "calendar": {"black_friday": {"sign": "free" if sign == "free"
                                                                                        else "positive"}}}
    path.write_text(yaml.safe_dump({"extends": str(CONTROLS), "data": SMALL["data"], "model": layout}))
    cfg = load_config(path)
    caplog.set_level(logging.WARNING)
    frames = {m: market_features(cfg, m)[0] for m in cfg.market_names}
    mmm = pooling.build_pooled_mmm(cfg)
    columns = [DATE_COLUMN, "y", *mmm.channel_columns, *mmm.control_columns]
    X, y = build_core.split_xy(panel.stack_markets(frames, columns, list(mmm.channel_columns)))
    mmm.build_model(X, y)
    for model in (mmm.model, freeze_dims_and_data(mmm.model)):
        for mode in (QUICK_MODE, "JAX"):
            pytensor.function(model.free_RVs, model.deterministics, mode=mode, on_unused_input="ignore")
    _no_traceback(capsys, caplog)
    effect = mmm.model["terms_effect"]
    assert effect.type.dims == (pooling.MARKET_DIM, "term")
    terms = priors_core.role_terms(mmm)
    assert sorted(terms.market_scales) == ["north", "south"]
    # each market's price is scaled by its own spread around its own mean (south's level is twice north's)
    assert terms.market_centers["south"]["price"] == pytest.approx(2 * terms.market_centers["north"]["price"],
                                                                   rel=0.05)
    assert terms.for_market("south").scales == terms.market_scales["south"]


def test_pooled_roi_priors_and_lift_tests_hold_in_every_market(tmp_path: Path) -> None:
    """A tight ROI belief below north's true facebook ROAS (1.79; south's is 1.29) pulls north's estimate towards it,
    each market's view reports the prior against its own ROAS; each market's adwords experiment calibrates the pooled
    model in that market's units, and its view reports its own experiment only."""
    belief = {"mean": 1.2, "sd": 0.05}
    lift = {"file": "lift.csv", "folder": str(tmp_path)}
    model = {"roi_priors": {"facebook": belief}, "lift_tests": lift}
    cfg = scenario(tmp_path, CONTROLS, model=model, markets={"spread": "learnt"})
    data = {m: market_features(cfg, m) for m in cfg.market_names}
    # and fixed scales, each market's own (a fifth above its maxima, in round numbers)
    fixed = {market: {"target": float(round(1.2 * features["y"].max(), -3)),
                      "channels": {c: float(round(1.2 * features[c].max(), -2)) for c in cfg.channels}}
             for market, (features, _) in data.items()}
    cfg = scenario(tmp_path, CONTROLS, model={**model, "scaling": {"markets": fixed}}, markets={"spread": "learnt"})
    experiment = calibration.Experiment("adwords", dt.date(2020, 6, 1), 6, 0.3)
    pd.concat([calibration.sample_lift_tests(truth, features, [experiment], 0.05).assign(market=market)
               for market, (features, truth) in data.items()]).to_csv(tmp_path / "lift.csv", index=False)
    messages: list[str] = []
    result = pooling.fit_pooled(cfg, {m: f for m, (f, _) in data.items()}, report=messages.append)
    assert messages.count("ROI priors on facebook, in every market") == 1
    assert messages.count("lift tests: 2 of 2 experiments calibrate the model (exact, each in its market)") == 1
    # the spreads were learnt on the model with its ROI priors and lift tests, the model sampled was built with
    # them (one per parameter and channel), and its Laplace start began at the mode found while learning them
    assert any(m.startswith("between-market spreads learnt from the data") for m in messages), messages
    spreads = pooling.PoolingPriors().spreads()
    for name in spreads:
        sigma = np.asarray(result.mmm.model_config[name].parameters["sigma"])
        assert sigma.shape == (len(result.mmm.channel_columns),) and not np.allclose(sigma, spreads[name])
    assert any(m.startswith("Laplace start: mode found in 0 Newton steps") for m in messages), messages
    loaded = persistence_core.load_model(persistence_core.save_model(result.mmm, tmp_path / "pooled.nc"))
    for name in spreads:
        np.testing.assert_array_equal(np.asarray(loaded.model_config[name].parameters["sigma"]),
                                      np.asarray(result.mmm.model_config[name].parameters["sigma"]))
    in_graph = result.mmm.idata.posterior[f"{calibration.LIFT_TESTS}_model_lift_original_scale"]
    for position, (market, (features, truth)) in enumerate(data.items()):
        narrowed, view = cfg.for_market(market), pooling.market_view(result.mmm, market)
        scales = build_core.fitted_scales(view)
        assert (scales.target, scales.channels) == (fixed[market]["target"], fixed[market]["channels"])
        report = priors_core.roi_prior_report(view, narrowed)
        row = report.set_index("channel").loc["facebook"]
        assert (row["prior_mean"], row["prior_sd"]) == (belief["mean"], belief["sd"])
        true = float(truth.contributions["facebook"].sum() / features["facebook"].sum())
        if market == "north":  # the belief is 12 prior sds below the truth: the estimate moves towards it
            assert belief["mean"] < row["posterior_mean"] < true - 2 * row["posterior_sd"], (true, row)
        else:  # south's truth is near the belief
            assert abs(row["posterior_mean"] - true) < 0.05 * true, (true, row)
        # the lift the pooled likelihood saw for this market's experiment is, draw by draw, the one its view implies
        tests = calibration.load_lift_tests(narrowed)
        assert list(tests["market"]) == [market]
        rows, _ = calibration.to_library_rows(tests, features)
        implied = calibration.implied_lift(view, rows, features)[:, 0]
        seen = in_graph.isel({in_graph.dims[-1]: position}).to_numpy().reshape(-1)
        np.testing.assert_allclose(seen, implied, rtol=1e-9)
        lifts = calibration.lift_test_report(view, tests)
        assert len(lifts) == 1 and lifts["model_lift_mean"].iloc[0] == pytest.approx(tests["lift"].iloc[0], rel=0.15)
    # with ROI priors, lift tests and market-level terms the markets still meet only in the shared variables: the
    # Laplace start took its Hessian a market at a time, and that Hessian is the one taken a parameter at a time
    assert not any("not independent" in m for m in messages)
    _assert_the_hessian_by_markets_is_the_whole_one(result.mmm)


def _assert_the_hessian_by_markets_is_the_whole_one(mmm) -> None:
    import jax
    from jax.flatten_util import ravel_pytree
    from pymc.sampling.jax import get_jaxified_logp

    model = sampling_core.sampling_model(mmm)
    point = model.initial_point()
    flat, unravel = ravel_pytree([np.asarray(point[v.name]) for v in model.value_vars])
    energy = jax.jit(jax.vmap(jax.value_and_grad(lambda x: -get_jaxified_logp(model)(unravel(x)))))
    blocks = laplace.blocks_along(model, pooling.MARKET_DIM)
    x = np.asarray(flat) + np.random.default_rng(3).uniform(-0.5, 0.5, flat.size)
    by_markets = laplace.Derivatives(energy, blocks)
    assert blocks.colours < flat.size and by_markets.blocks_hold(x)
    np.testing.assert_allclose(by_markets(x)[2], laplace.Derivatives(energy)(x)[2], rtol=1e-7, atol=1e-7)


def test_the_pooled_version_changes_with_the_data_the_settings_and_the_experiments(tmp_path: Path) -> None:
    """The pooled model file is reused while its version holds: a new week, prior or experiment makes a new one."""
    lift = tmp_path / "lift.csv"
    lift.write_text("channel,start_date,end_date,delta_spend,lift,lift_sd,market\n"
                    "adwords,2020-06-01,2020-06-28,1000,2000,200,north\n")
    path = tmp_path / "versioned.yaml"
    path.write_text(yaml.safe_dump({"extends": str(CONTROLS),
                                    "model": {"lift_tests": {"file": lift.name, "folder": str(tmp_path)}}}))
    cfg = load_config(path)
    frames = small_frames()
    version = pooling.pooled_version(cfg, frames)
    assert pooling.pooled_version(cfg.for_market("south"), small_frames()) == version  # any market's run: the same
    frames["south"].loc[9, "y"] += 1.0
    assert pooling.pooled_version(cfg, frames) != version
    believed = tmp_path / "believed.yaml"
    believed.write_text(yaml.safe_dump({"extends": str(path),
                                        "model": {"roi_priors": {"adwords": {"mean": 2.0, "sd": 0.5}}}}))
    assert pooling.pooled_version(load_config(believed), small_frames()) != version
    lift.write_text(lift.read_text().replace(",2000,", ",2500,"))
    assert pooling.pooled_version(cfg, small_frames()) != version
    fixed = cfg.model_copy(update={"markets": cfg.markets.model_copy(update={"spread": "fixed"})})
    assert pooling.pooled_version(fixed, small_frames()) != pooling.pooled_version(cfg, small_frames())


def test_a_pooled_fit_falls_back_to_the_stated_spreads_and_the_configured_sampler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When learning the spreads finds no usable mode, the fit goes on with the stated ones; and
    sampler.fallback_name is the backend of the cold refit that replaces a failed Laplace start, pooled too."""
    cfg = scenario(tmp_path, sampler={"fallback_name": "nutpie"}, markets={"spread": "learnt"})
    asked: dict = {}

    class AskedError(Exception):
        pass

    def sample(*args, **kwargs):
        asked.update(kwargs)
        raise AskedError

    def no_mode(*args, **kwargs):
        raise laplace.LaplaceFailedError("the Hessian at the mode is not positive definite")

    monkeypatch.setattr(pooling, "sample", sample)
    monkeypatch.setattr(pooling, "learn_spreads", no_mode)
    messages: list[str] = []
    with pytest.raises(AskedError):
        pooling.fit_pooled(cfg, {m: market_features(cfg, m)[0] for m in cfg.market_names}, report=messages.append)
    assert asked["cold_sampler"] == "nutpie"
    assert "between-market spreads: the stated ones, since learning them found no usable mode (the Hessian at the " \
        "mode is not positive definite)" in messages
    assert asked["warm"].start is None


def test_pooled_markets_take_their_fixed_scales_and_a_new_maximum_moves_none(tmp_path: Path) -> None:
    """model.scaling with pooling: each market's entry over the scenario's scales (controls name by name); a market
    without a fixed target takes its own weeks' maximum; a week above a fixed maximum changes none of the scales."""
    channels = {"adwords": 5e4, "facebook": 9e4, "linkedin": 1.6e5}
    cfg = scenario(tmp_path, CONTROLS, model={"scaling": {"controls": {"price": 5.0}, "markets": {
        "north": {"target": 3e5, "channels": channels, "controls": {"price": 7.0}}}}})
    frames = {m: market_features(cfg, m)[0] for m in cfg.market_names}

    def built(frames: dict[str, pd.DataFrame]) -> tuple[xr.Dataset, dict]:
        mmm, _ = pooling.built_pooled_mmm(cfg, frames)
        return mmm.scalers, priors_core.role_terms(mmm).market_scales

    scalers, terms = built(frames)
    assert float(scalers["_target"].sel(market="north")) == 3e5
    assert float(scalers["_target"].sel(market="south")) == frames["south"]["y"].max()
    assert scalers["_channel"].sel(market="north", channel=list(channels)).values.tolist() == list(channels.values())
    np.testing.assert_array_equal(scalers["_channel"].sel(market="south", channel=cfg.channels),
                                  frames["south"][cfg.channels].max())
    assert (terms["north"]["price"], terms["south"]["price"]) == (7.0, 5.0)
    north = frames["north"].copy()
    north.loc[north.index[-1], ["y", *channels]] *= 3  # a week far above every maximum
    grown, _ = built({**frames, "north": north})
    xr.testing.assert_equal(grown.sel(market="north"), scalers.sel(market="north"))
    assert pooling.unsupported(load_config(SCENARIO)) == []
    assert pooling.unsupported(load_config(CONTROLS)) == []


def test_population_scales_every_market_in_proportion_to_it_and_fixed_scales_win(tmp_path: Path) -> None:
    """markets.population: each market's scales are its population times the markets' median maximum per head (so
    with the same population two markets share one scale per head); a market's fixed scales win over them."""
    population, scaling = {"north": 1.0e6, "south": 2.5e6}, {"scaling": {"markets": {"south": {"target": 7e5}}}}
    cfg = scenario(tmp_path, CONTROLS, markets={"population": population}, model=scaling)
    frames = {m: market_features(cfg, m)[0] for m in cfg.market_names}
    mmm, _ = pooling.built_pooled_mmm(cfg, frames)
    per_head = {c: np.median([frames[m][c].max() / population[m] for m in frames]) for c in ["y", *cfg.channels]}
    for market, size in population.items():
        channels = mmm.scalers["_channel"].sel(market=market, channel=cfg.channels).to_numpy()
        np.testing.assert_allclose(channels, [size * per_head[c] for c in cfg.channels], rtol=1e-12)
    assert float(mmm.scalers["_target"].sel(market="north")) == pytest.approx(population["north"] * per_head["y"])
    assert float(mmm.scalers["_target"].sel(market="south")) == 7e5
    assert pooling.pooled_version(cfg, frames) != pooling.pooled_version(scenario(tmp_path, CONTROLS, model=scaling),
                                                                         frames)
    for markets, message in (({"population": {"north": 1.0}}, r"every market's population.*got \['north'\]"),
                             ({"population": {"north": 1.0, "south": 0}}, "must be > 0"),
                             ({"pooling": "separate", "population": population}, "scales the markets of a pooled")):
        with pytest.raises(ConfigError, match=message):
            scenario(tmp_path, CONTROLS, markets=markets)


def test_each_markets_view_measures_its_channels_against_the_pooled_models_own_prior(
    pooled: PooledFit, tmp_path: Path
) -> None:
    """A market's view has only nominal priors; the pooled model's own prior draws of each market's contributions,
    kept with it, are what its channels' posterior ROAS is compared with, and they survive saving the pooled model."""
    from mmm_assets.core.evaluation.measurement import MEASURED
    from mmm_assets.core.evaluation.prior_checks import measure_channels

    copy_ = persistence_core.load_model(persistence_core.save_model(pooled.mmm, tmp_path / "pooled.nc"))
    assert measure_channels(pooling.market_view(copy_, POOR), pooled.cfg) is None  # no prior kept: nothing said
    batched = pooling.keep_prior_totals(copy_, draws=200, batch_bytes=8 * pooling.contribution_cells(copy_) * 70)  # 70 + 70 + 60 draws
    assert list(batched.idata[pooling.PRIOR_TOTALS_GROUP]["draw"].values) == list(range(200))
    kept = persistence_core.load_model(persistence_core.save_model(batched, tmp_path / "kept.nc"))
    tables = {m: measure_channels(pooling.market_view(kept, m), pooled.cfg) for m in pooled.cfg.market_names}
    for market, table in tables.items():
        assert list(table["channel"]) == list(kept.channel_columns), market
        assert (table["prior_high"] > table["prior_low"]).all() and table["spend_share"].sum() == pytest.approx(1.0)
    # 1 % noise: the informative markets' data pin their ROAS down, each against its own prior
    for market in set(pooled.cfg.market_names) - {POOR}:
        assert (tables[market]["verdict"] == MEASURED).all(), tables[market]
    assert not np.allclose(tables["north"]["prior_mean"], tables["south"]["prior_mean"])
