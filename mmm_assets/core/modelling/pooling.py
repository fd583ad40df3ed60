"""Partial pooling across markets: one hierarchical MMM for all markets, and a single-market view of it per market.

``fit_pooled`` fits PyMC-Marketing's ``MMM`` with ``dims=("market",)`` to every market's feature frame at once. Each
market keeps its own intercept, noise, saturation ``lam``, saturation ``beta`` and adstock ``alpha``, but the media
parameters are drawn around a per-channel mean shared by the markets::

    log lam[m, c]     ~ Normal(mu_lam[c], spread_lam)          mu_lam[c] ~ Normal(mean, mean_sd)
    logit alpha[m, c] ~ Normal(mu_alpha[c], spread_alpha)      (the same for mu_alpha, mu_beta)
    log beta[m, c]    ~ Normal(mu_beta[c], spread_beta)

so a market whose own data say little borrows strength from the others, and one whose data say a lot keeps its own
values. ``spread`` is the standard deviation between markets on the log (``lam``, ``beta``) or logit (``alpha``)
scale: 0.2 means markets are expected to differ by roughly ±20 %. It is fixed while sampling (sampled with the rest,
it made a funnel no sampler crossed: docs/performance.md, "Pooling: a fixed spread"): ``markets.spread`` says
whether it is learnt from the data first, one per parameter and channel (:mod:`.spread`, by default from 5
markets on), or the stated assumption below (``PoolingPriors``).

Scaling is per market (``DataDerivedScaling(method="max", dims=())``: the maximum over the dates only, separately
for every market and channel), unlike the library's default for a panel, which takes one maximum over all markets.
So a market's ``lam`` applies to its own max-scaled spend and its ``beta`` is in units of its own target maximum,
exactly as in a model fitted to that market alone, and the two are comparable. ``markets.population`` scales each
market in proportion to its population instead (Meridian's population scaling), and fixed scales (``model.scaling``,
per market in ``model.scaling.markets``) replace a market's maxima, so one more week does not change what its
parameters mean (:class:`~.panel.PanelScales`); they should then be near each market's own maxima, for the same
reason.

The non-media terms (controls, competitors, calendar events, the trend; :class:`~mmm_assets.core.modelling.priors.
RoleTerms`) are per market: each market has its own centre and scale per term (a price around 10 in one market and
20 in another is measured in each market's own units) and its own coefficient, with the single-market model's prior;
the carry-over rate of a carried-over term is shared. They are not pooled: a control's effect is the market's own
business (a price, a local event), and with one coefficient per market and term the market's view below is exactly a
single-market model's terms.

ROI priors (``model.roi_priors``) state the belief on every market's own ROAS; lift tests calibrate the market each
experiment names (its ``market`` column), with that market's parameters and scales
(:mod:`mmm_assets.core.modelling.calibration`).

Markets may cover different weeks (a region that opened later, one whose history ends earlier). The library needs a
balanced panel, so the markets are stacked over the union of their weeks and each market's missing weeks are padded
and left out of the likelihood (:mod:`mmm_assets.core.modelling.panel`): a market's parameters, scales, term centres,
carry-over and lift tests are those of its own weeks, and its view below covers its own weeks only.

``market_view`` turns the pooled model into an ordinary single-market ``MMM`` whose posterior is the pooled
posterior's slice for one market (over its own weeks) and whose scales are that market's scales (fixed), so
everything that takes a single-market model (ROAS, budget, contributions, predictions, ``model.save_model`` /
``model.load_model``) works on it unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from pymc_marketing.mmm import MMM
from pymc_marketing.mmm.components.base import Transformation
from pymc_marketing.mmm.scaling import FixedScaling, Scaling

from mmm_assets.core.config import (
    DATE_COLUMN,
    MARKET_COLUMN,
    TARGET_COLUMN,
    ConfigError,
    MMMConfig,
    SamplerConfig,
)
from mmm_assets.core.errors import InputError, day
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.inference.laplace import LaplaceFailedError, LaplaceStart
from mmm_assets.core.inference.progress import Reporter, silent
from mmm_assets.core.inference.sampling import FitResult, available_sampler, sample
from mmm_assets.core.modelling.build import build_mmm, free_parameters, resolve_scales, split_xy
from mmm_assets.core.modelling.calibration import add_lift_tests, load_lift_tests
from mmm_assets.core.modelling.fitting import refit_sampler
from mmm_assets.core.modelling.forecast import predict_weeks
from mmm_assets.core.modelling.panel import (
    Panel,
    PanelScales,
    market_span,
    own_weeks,
    padded_predictive,
    stack_panel,
    use_panel,
)
from mmm_assets.core.modelling.priors import add_roi_priors, role_terms
from mmm_assets.core.modelling.spread import SPREADS_ATTR, PoolingPriors, learn_spreads, learns, spread_record
from mmm_assets.core.stores.duckdb_store import content_hash
from mmm_assets.core.variables import CONTRIBUTIONS, ORIGINAL_SCALE_SUFFIX

MARKET_DIM = MARKET_COLUMN
#: Idata attributes of a market view saying where its posterior came from.
VIEW_MARKET_ATTR = "pooled_market"
VIEW_MARKETS_ATTR = "pooled_markets"
VIEW_SOURCE_ATTR = "pooled_model_id"
#: Groups whose variables are restricted to the single-market model's own variables (hyper-parameters are dropped).
_PARAMETER_GROUPS = ("posterior", "prior")
#: The idata group that keeps the pooled model's own prior draws of each market's and channel's contribution summed
#: over the market's own weeks (KPI units; variable CONTRIBUTIONS, dims chain, draw, market, channel): a market's
#: view has only nominal priors, so which channels its data measured is judged against these
#: (core.evaluation.measurement).
PRIOR_TOTALS_GROUP = "prior_contribution_totals"


def unsupported(cfg: MMMConfig) -> list[str]:
    """The scenario's settings the pooled model does not implement yet (it has media, intercept, seasonality and the
    non-media terms)."""
    found = []
    if cfg.model.lift_tests and cfg.model.lift_tests.method != "exact":
        found.append(f"model.lift_tests.method {cfg.model.lift_tests.method!r} (it takes 'exact')")
    return found


def build_pooled_mmm(cfg: MMMConfig, priors: PoolingPriors | None = None, scaling: Scaling | None = None) -> MMM:
    """The hierarchical MMM: the project's single-market model (``model.build_mmm``) with a market dimension, scaled
    by ``scaling`` (default: each market by its own maxima; :class:`~.panel.PanelScales`).

    Raises :class:`ConfigError` when the scenario uses what the pooled model does not implement (:func:`unsupported`).
    """
    missing = unsupported(cfg)
    if missing:
        raise ConfigError(
            f"scenario {cfg.scenario!r}: markets.pooling is 'pooled', but the pooled model does not support "
            f"{'; '.join(missing)} yet. Set markets.pooling: separate, or remove those settings"
        )
    template = build_mmm(cfg)
    model_config = (priors or PoolingPriors()).model_config()
    if template.control_columns:  # the terms model the controls (priors.NoControlCoefficients)
        model_config["gamma_control"] = template.model_config["gamma_control"]
    pooled = MMM(
        date_column=template.date_column,
        channel_columns=list(template.channel_columns),
        target_column=template.target_column,
        adstock=template.adstock,
        saturation=template.saturation,
        adstock_first=template.adstock_first,
        control_columns=template.control_columns,
        yearly_seasonality=template.yearly_seasonality,
        dims=(MARKET_DIM,),
        scaling=scaling or PanelScales({}, {}).scaling(),
        model_config=model_config,
    )
    terms = role_terms(template)
    if terms is not None:
        pooled.add_mu_effect(terms.model_copy(update={"market_dim": MARKET_DIM}))
    return pooled


def built_pooled_mmm(
    cfg: MMMConfig, frames: Mapping[str, pd.DataFrame], priors: PoolingPriors | None = None
) -> tuple[MMM, Panel]:
    """The pooled model built on every market's frame (over the union of their weeks, padded: :mod:`.panel`), its
    original-scale channel contributions and ``y`` registered; no ROI priors or lift tests yet. Also the panel.

    Each market is scaled by its own weeks' maxima, or in proportion to its population (``markets.population``), or
    by its fixed scales in ``model.scaling`` (its own entry in ``model.scaling.markets`` over the scenario's): target,
    channels and controls (:class:`~.panel.PanelScales`)."""
    fixed = {market: resolve_scales(cfg.for_market(market), frame) for market, frame in frames.items()}
    scales = PanelScales.of(frames, cfg.channels, fixed, cfg.markets.population if cfg.markets else None)
    mmm = build_pooled_mmm(cfg, priors, scales.scaling())
    columns = [DATE_COLUMN, TARGET_COLUMN, *mmm.channel_columns, *(mmm.control_columns or [])]
    panel = stack_panel(frames, columns, list(mmm.channel_columns), role_terms(mmm))
    use_panel(mmm, panel, {market: own.controls for market, own in fixed.items() if own is not None})
    mmm.build_model(*split_xy(panel.frame))
    scales.check(mmm)
    mmm.add_original_scale_contribution_variable(var=["channel_contribution", "y"])
    return mmm, panel


def _calibrated(
    cfg: MMMConfig, frames: Mapping[str, pd.DataFrame], priors: PoolingPriors, report: Reporter
) -> tuple[MMM, Panel]:
    """:func:`built_pooled_mmm` with the scenario's ROI priors and lift tests (what they cover said to ``report``)."""
    mmm, panel = built_pooled_mmm(cfg, frames, priors)
    with_prior = add_roi_priors(mmm, cfg, split_xy(panel.frame)[0], list(frames), own_weeks(mmm))
    if with_prior:
        report(f"ROI priors on {', '.join(with_prior)}, in every market")
    tests = load_lift_tests(cfg, every_market=True)
    if tests is not None:
        added, notes = add_lift_tests(mmm, tests, frames)
        for note in notes:
            report(f"lift tests: {note}")
        report(f"lift tests: {added} of {len(tests)} experiments calibrate the model (exact, each in its market)")
    return mmm, panel


def fit_pooled(
    cfg: MMMConfig,
    frames: Mapping[str, pd.DataFrame],
    report: Reporter = silent,
    sampler_cfg: SamplerConfig | None = None,
    priors: PoolingPriors | None = None,
    in_sample_predictive: bool = True,
) -> FitResult:
    """Fit one hierarchical MMM to every market's validated feature frame (market name -> frame).

    ``cfg`` is the scenario (any market's narrowed copy works too: only model and sampler settings are read).
    The frames must have the same columns; they may cover different weeks, each market's consecutive and all on one
    weekly grid (:mod:`mmm_assets.core.modelling.panel`). Diagnostics are over every free parameter of the
    pooled model, hyper-parameters included; ``diagnose(market_view(...).idata, ...)`` gives one market's own.
    """
    # numpyro's own diagonal mass matrix when it adapts one: with the dense one (sampler.dense_mass) this hierarchical
    # model took a third of the leapfrog steps but diverged (1 and 6 divergences over two seeds of the pooled test
    # scenario, none without). Started from the Laplace approximation (sampler.cold_start: laplace), it moves with
    # that approximation's dense covariance instead: the spread between markets is fixed, so the posterior has a
    # proper mode and no funnel (benchmarks/geos.py: ~15 leapfrog steps per draw against ~500 adapting)
    s = (sampler_cfg or cfg.sampler).model_copy(update={"dense_mass": False})
    sampler = available_sampler(s.cold, report)
    priors, learnt = priors or PoolingPriors(), None
    if cfg.markets is not None and learns(cfg.markets.spread, len(frames), report):
        try:
            learnt = learn_spreads(_calibrated(cfg, frames, priors, report)[0].model, priors.spreads(), MARKET_DIM,
                                   report)
        except LaplaceFailedError as err:  # no usable mode to learn them at: the fit goes on as with `fixed`
            report(f"between-market spreads: the stated ones, since learning them found no usable mode ({err})")
        else:
            priors = priors.with_spreads(learnt.spreads)
    start = learnt.mode if learnt else None
    mmm, panel = _calibrated(cfg, frames, priors, silent if start is not None else report)
    X, y = split_xy(panel.frame)
    laplace_start = sampler == "numpyro" and s.cold_start == "laplace"
    warm = LaplaceStart(s.chains, s.seed, report, MARKET_DIM, start) if laplace_start else None
    parameters = free_parameters(mmm)
    weeks = X[DATE_COLUMN].nunique()
    if panel.padded:
        report("markets cover different weeks, each fitted on its own (the others padded, outside the likelihood): "
               + ", ".join(f"{m} {day(a)}..{day(b)} ({len(f)} weeks)" for (m, (a, b)), f in
                           zip(panel.spans.items(), frames.values())))
    report(
        f"fitting a pooled model of {len(frames)} markets ({', '.join(frames)}) x {weeks} weeks x "
        f"{len(mmm.channel_columns)} channels with {sampler}: {s.chains} chains x "
        f"({s.warm_tune if warm else s.tune} tune + {s.draws} draws){f', from {warm.label}' if warm else ''}"
    )
    t = cfg.validation.thresholds
    with padded_predictive(mmm):
        result = sample(mmm, X, y, s, sampler, parameters, report, in_sample_predictive, label="pooled fit",
                        ess_target=max(t.ess_bulk_min, t.ess_tail_min), rhat_target=t.rhat_max, warm=warm,
                        cold_sampler=s.fallback, divergences_max=t.divergences_max,
                        var_names=kept_in_posterior(mmm))
    result.mmm.idata.attrs[SPREADS_ATTR] = spread_record(priors, list(mmm.channel_columns), learnt)
    return result


def kept_in_posterior(mmm: MMM) -> list[str]:
    """What a pooled fit's posterior keeps: the free variables and the deterministics without a date dimension
    (``saturation_lam``, a term's coefficients, an experiment's lift). Each market's weekly contributions and ``mu``,
    and the totals over every market (no dimension), are left out: a market's view computes its own
    (:func:`market_view`)."""
    dims = mmm.model.named_vars_to_dims
    kept = [v.name for v in mmm.model.deterministics if dims.get(v.name) and DATE_COLUMN not in dims[v.name]]
    return [rv.name for rv in mmm.model.free_RVs] + kept


def pooled_version(cfg: MMMConfig, frames: Mapping[str, pd.DataFrame]) -> str:
    """What a pooled fit and its holdout refit depend on, as a short hash: every market's features, the model,
    sampler and validation settings, markets.spread, and the experiments it is calibrated with (the file's
    contents), so a changed prior, setting or lift test refits the model instead of reusing the one fitted before."""
    digest = hashlib.sha256(content_hash(pd.concat(frames, names=[MARKET_DIM]).reset_index(level=0)).encode())
    for section in (cfg.model, cfg.sampler, cfg.validation):
        digest.update(section.model_dump_json().encode())
    digest.update(f"spread {cfg.markets.spread if cfg.markets else None}".encode())
    digest.update(f"population {sorted(cfg.markets.population.items()) if cfg.markets else None}".encode())
    tests = load_lift_tests(cfg, every_market=True)
    digest.update(content_hash(tests).encode() if tests is not None else b"no lift tests")
    return digest.hexdigest()[:16]


def pooled_markets(mmm: MMM) -> list[str]:
    """The markets of a pooled model, in its posterior's order."""
    if MARKET_DIM not in mmm.dims:
        raise ValueError(f"the model has dims {mmm.dims}, not a {MARKET_DIM!r} dimension: it is not a pooled model")
    return [str(m) for m in mmm.idata.posterior.coords[MARKET_DIM].values]


def _single_market(transform: Transformation) -> Transformation:
    """The same transformation (type and settings) with its default priors, which the view's MMM gives channel dims."""
    single = copy.deepcopy(transform)
    single.function_priors = copy.deepcopy(single.default_priors)
    return single


def _slice(group: xr.Dataset, market: str, span: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> xr.Dataset:
    """The market's part of a group, over its own weeks (``span``) when the markets' weeks differ."""
    group = group.sel({MARKET_DIM: market}, drop=True) if MARKET_DIM in group.dims else group
    return group.sel({DATE_COLUMN: slice(*span)}) if span is not None and DATE_COLUMN in group.dims else group


#: Memory keep_prior_totals lets one batch of weekly prior contributions take (each batch compiles its sampler
#: again, so a small panel is drawn in one): 500 draws of 50 geos x 10 channels x 156 weeks would take 312 MB.
PRIOR_BATCH_BYTES = 64 * 2**20


def _prior_totals(mmm: MMM, draws: int, seed: int) -> xr.DataArray:
    """``draws`` prior draws of each market's and channel's contribution summed over the market's own weeks."""
    with quick_compile(), padded_predictive(mmm), mmm.model:
        drawn = pm.sample_prior_predictive(draws=draws, var_names=[CONTRIBUTIONS], random_seed=seed)
    weekly = drawn.prior[CONTRIBUTIONS].to_dataset()
    totals = [_slice(weekly, m, market_span(mmm, m))[CONTRIBUTIONS].sum(DATE_COLUMN).expand_dims({MARKET_DIM: [m]})
              for m in pooled_markets(mmm)]
    return xr.concat(totals, MARKET_DIM)


def contribution_cells(mmm: MMM) -> int:
    """The values of one draw of a built pooled model's weekly channel contributions (dates x markets x channels)."""
    return math.prod(len(mmm.model.coords[d]) for d in mmm.model.named_vars_to_dims[CONTRIBUTIONS])


def keep_prior_totals(mmm: MMM, draws: int, seed: int = 0, batch_bytes: int = PRIOR_BATCH_BYTES) -> MMM:
    """Add to a fitted pooled model's idata (group PRIOR_TOTALS_GROUP) ``draws`` prior draws of each market's and
    channel's contribution over the market's own weeks, which every market's view then carries; returns ``mmm``.
    Drawn in batches of at most ``batch_bytes`` of weekly contributions, so a large panel's are never all in memory
    at once."""
    batch = max(1, batch_bytes // (8 * contribution_cells(mmm)))
    sizes = [min(batch, draws - start) for start in range(0, draws, batch)]
    batches = [_prior_totals(mmm, size, seed + i) for i, size in enumerate(sizes)]
    totals = xr.concat(batches, "draw").assign_coords(draw=np.arange(draws))
    mmm.idata[PRIOR_TOTALS_GROUP] = xr.DataTree(totals.to_dataset(name=CONTRIBUTIONS))
    return mmm


def market_view(pooled: MMM, market: str, contributions: bool = True) -> MMM:
    """A single-market ``MMM`` whose posterior is ``pooled``'s for ``market``.

    Built like a model loaded from a file (``MMM.load_from_idata``): the market's slice of every idata group (over its
    own weeks when the markets' weeks differ), the single-market model's own variables only (the pooled
    hyper-parameters stay in the pooled model), the market's channel and target scales as fixed scaling, and the
    pooled sampler's ``sample_stats`` (divergences are the pooled fit's). Its nominal priors are the library
    defaults: it is never refitted; the idata attributes ``pooled_market`` / ``pooled_markets`` /
    ``pooled_model_id`` record where the posterior came from.

    The pooled posterior keeps its parameters only (:func:`kept_in_posterior`): the view computes its own weekly
    deterministics (channel contributions, ``mu``, their original scale and totals) from its market's parameters with
    its own graph, which gives the pooled model's values for that market (a market that opens later carries nothing
    over from the padded weeks before it). Every market's weekly contributions for every draw would otherwise sit in
    the pooled posterior (5.2 GiB at 50 markets x 10 channels x 156 weeks x 4,000 draws), loaded again by every
    market's run. Without ``contributions`` the view keeps its parameters only, which is all a forecast of new weeks
    needs (the pooled holdout refit's).
    """
    markets = pooled_markets(pooled)
    if market not in markets:
        raise ValueError(f"the pooled model has no market {market!r}; its markets are {markets}")
    source, span = pooled.idata, market_span(pooled, market)
    constant = _slice(source.constant_data.to_dataset(), market, span)
    channel_scale = constant["channel_scale"].astype(float)
    target_scale = float(constant["target_scale"])
    view = MMM(
        date_column=pooled.date_column,
        channel_columns=list(pooled.channel_columns),
        target_column=pooled.target_column,
        adstock=_single_market(pooled.adstock),
        saturation=_single_market(pooled.saturation),
        adstock_first=pooled.adstock_first,
        control_columns=pooled.control_columns,
        yearly_seasonality=pooled.yearly_seasonality,
        scaling=Scaling(
            target=FixedScaling(dims=(), value=target_scale),
            channel=FixedScaling(dims=(), value=channel_scale),
        ),
        model_config={"gamma_control": pooled.model_config["gamma_control"]} if pooled.control_columns else None,
    )
    terms = role_terms(pooled)
    if terms is not None:
        view.add_mu_effect(terms.for_market(market))
    fit_data = _slice(source.fit_data.to_dataset(), market, span)
    features = fit_data.to_dataframe().reset_index()
    X, y = features.drop(columns=[view.target_column]), features[view.target_column]
    view.build_model(X, y)  # only to learn the single-market model's variable names
    own = set(view.model.named_vars) | {f"{name}{ORIGINAL_SCALE_SUFFIX}" for name in view.model.named_vars}

    groups: dict[str, xr.Dataset] = {}
    for name, node in source.children.items():
        group = _slice(node.to_dataset(), market, span)
        if name in _PARAMETER_GROUPS:
            group = group[[v for v in group.data_vars if v in own]]
        groups[name] = group
    idata = xr.DataTree.from_dict({f"/{name}": group for name, group in groups.items()})
    restored = [
        name[: -len(ORIGINAL_SCALE_SUFFIX)]
        for name in pooled.model.named_vars
        if name.endswith(ORIGINAL_SCALE_SUFFIX)
        and (
            name[: -len(ORIGINAL_SCALE_SUFFIX)].endswith("_contribution")
            or name[: -len(ORIGINAL_SCALE_SUFFIX)] == view.output_var
        )
    ]
    idata.attrs = {
        **view.create_idata_attrs(),
        "original_scale_vars": json.dumps(restored),
        VIEW_MARKET_ATTR: market,
        VIEW_MARKETS_ATTR: json.dumps(markets),
        VIEW_SOURCE_ATTR: str(source.attrs.get("id", pooled.id)),
        **({SPREADS_ATTR: source.attrs[SPREADS_ATTR]} if SPREADS_ATTR in source.attrs else {}),
    }
    loaded = MMM.load_from_idata(idata)
    built_scale = loaded.model["channel_scale"].get_value()
    if not np.allclose(built_scale, channel_scale.sel(channel=loaded.channel_columns).to_numpy()):
        raise RuntimeError(f"market view {market!r}: its channel scale does not match the pooled model's")
    missing = [v.name for v in loaded.model.deterministics if v.name not in loaded.idata.posterior]
    if missing and contributions:
        pm.compute_deterministics(loaded.idata, var_names=missing, model=loaded.model, extend_dataset=True,
                                  progressbar=False)
    return loaded


def view_is_pooled(mmm: MMM) -> str | None:
    """The market a model is a pooled view of, or None for a model fitted on its own."""
    return mmm.idata.attrs.get(VIEW_MARKET_ATTR) if mmm.idata is not None else None


def holdout_forecast_pooled(
    cfg: MMMConfig, frames: Mapping[str, pd.DataFrame], weeks: int, report: Reporter = silent
) -> tuple[dict[str, pd.DataFrame], FitResult]:
    """The pooled counterpart of ``model.holdout_forecast``: one pooled refit without the last ``weeks`` weeks of
    every market (its own last weeks: a market whose history ends earlier is held out earlier).

    Returns, per market, the forecast of its held-out weeks (``date``, ``actual``, ``predicted_mean`` / HDI, as
    ``model.holdout_forecast``) and the refit itself. Raises :class:`InputError` naming every market with fewer
    than ``validation.min_weeks`` weeks, or not more than ``weeks``, which the refit could not be trained on.
    """
    least = max(cfg.validation.min_weeks, weeks + 1)
    short = [
        f"market {m!r} has {len(f)} weeks ({day(f[DATE_COLUMN].iloc[0])}..{day(f[DATE_COLUMN].iloc[-1])})"
        for m, f in frames.items() if len(f) < least
    ]
    if short:
        raise InputError(
            f"the pooled holdout refit holds out the last {weeks} weeks of every market and trains on the weeks "
            f"before them, so it needs at least {least} weeks per market (validation.min_weeks "
            f"{cfg.validation.min_weeks}, more than validation.holdout_weeks {weeks}): {'; '.join(short)}. "
            "Lower validation.holdout_weeks, or fit the markets separately"
        )
    train = {m: f.iloc[:-weeks].reset_index(drop=True) for m, f in frames.items()}
    report(f"holdout: refitting the pooled model without the last {weeks} weeks of every market")
    sampler = refit_sampler(cfg, cfg.validation.holdout_draws)
    result = fit_pooled(cfg, train, report, sampler_cfg=sampler, in_sample_predictive=False)
    forecasts = {
        market: predict_weeks(market_view(result.mmm, market, contributions=False), frame.iloc[-weeks:],
                              cfg.sampler.seed)[0]
        for market, frame in frames.items()
    }
    return forecasts, result

