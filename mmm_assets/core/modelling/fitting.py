"""Fitting the configured MMM to a feature frame.

Original-scale variables are registered before fitting so predictions and contributions come back in target units,
and the in-sample posterior predictive is computed once here and saved with the posterior so no later step has to
repeat it. Before sampling, the scenario's ROI priors (:mod:`mmm_assets.core.modelling.priors`) and lift tests
(:mod:`mmm_assets.core.modelling.calibration`) are added to the built model.
"""

from __future__ import annotations

import pandas as pd
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import MMMConfig, SamplerConfig
from mmm_assets.core.inference.laplace import LaplaceStart
from mmm_assets.core.inference.progress import Reporter, silent
from mmm_assets.core.inference.sampling import FitResult, available_sampler, sample, sampling_model
from mmm_assets.core.inference.warmstart import PreviousPosterior, WarmStart, warm_start
from mmm_assets.core.modelling.build import ModelScales, build_mmm, free_parameters, resolve_scales, split_xy
from mmm_assets.core.modelling.calibration import add_lift_tests, load_lift_tests
from mmm_assets.core.modelling.priors import add_roi_priors


def fit(
    cfg: MMMConfig,
    features: pd.DataFrame,
    report: Reporter = silent,
    sampler_cfg: SamplerConfig | None = None,
    in_sample_predictive: bool = True,
    scales: ModelScales | None = None,
    lift_tests: pd.DataFrame | None = None,
    warm_from: PreviousPosterior | None = None,
) -> FitResult:
    """Fit the configured MMM to a validated feature frame, reporting progress as it samples.

    ``scales`` fixes the model's scales (see :class:`ModelScales`; over ``model.scaling``). ``lift_tests``: validated
    experiments (:func:`mmm_assets.core.modelling.calibration.read_lift_tests`); None reads ``model.lift_tests`` when
    set. The ROI priors of ``model.roi_priors`` are always added. ``warm_from``: a previous posterior (the champion's)
    to warm-start numpyro from when ``sampler.warm_start`` is on (:mod:`mmm_assets.core.inference.warmstart`).
    """
    s = sampler_cfg or cfg.sampler
    absent = [c for c in (*cfg.channels, *cfg.controls) if c not in features.columns]
    if absent:
        raise ValueError(
            f"the feature frame lacks {absent}; calendar event columns come from "
            "mmm_assets.core.data.calendar.with_calendar(frame, cfg), applied before validating the features"
        )
    X, y = split_xy(features)
    used_scales = resolve_scales(cfg, features, scales)
    mmm = build_mmm(cfg, used_scales, features)
    mmm.build_model(X, y)
    mmm.add_original_scale_contribution_variable(var=["channel_contribution", "y"])
    if used_scales is not None:
        report(f"fixed scales: {used_scales.as_dict()}")
    with_prior = add_roi_priors(mmm, cfg, X)
    if with_prior:
        report(f"ROI priors on {', '.join(with_prior)}")
    tests = lift_tests if lift_tests is not None else load_lift_tests(cfg)
    if tests is not None:
        method = cfg.model.lift_tests.method if cfg.model.lift_tests else "exact"
        added, notes = add_lift_tests(mmm, tests, features, method)
        for note in notes:
            report(f"lift tests: {note}")
        report(f"lift tests: {added} of {len(tests)} experiments calibrate the model ({method})")
    parameters = free_parameters(mmm)
    warm: WarmStart | LaplaceStart | None = _warm_start(mmm, s, warm_from, report)
    sampler = "numpyro" if warm else available_sampler(s.cold, report)
    if warm is None and sampler == "numpyro" and s.cold_start == "laplace":
        if cfg.model.time_varying_intercept:
            # the Gaussian process's ~200 coefficients make the mode a poor place to start from and its curvature a
            # poor mass matrix (README "Model families": every such start missed the gates and fell back)
            report("no Laplace start with a time-varying intercept: the chains adapt their mass matrix (tune steps)")
        else:
            warm = LaplaceStart(s.chains, s.seed, report)
    report(
        f"fitting {len(X)} weeks x {len(cfg.channels)} channels with {sampler}: "
        f"{s.chains} chains x ({s.warm_tune if warm else s.tune} tune + {s.draws} draws)"
        f"{f', from {warm.label}' if isinstance(warm, LaplaceStart) else ''}; parameters {', '.join(parameters)}"
    )
    t = cfg.validation.thresholds
    return sample(mmm, X, y, s, sampler, parameters, report, in_sample_predictive,
                  ess_target=max(t.ess_bulk_min, t.ess_tail_min), rhat_target=t.rhat_max, warm=warm,
                  cold_sampler=s.fallback, divergences_max=t.divergences_max)

def _warm_start(mmm: MMM, s: SamplerConfig, previous: PreviousPosterior | None, report: Reporter) -> WarmStart | None:
    """The warm start of a built model from ``previous``, when the settings allow it and the posterior fits."""
    if previous is None or not s.warm_start:
        return None
    if s.name != "numpyro":
        report(f"no warm start: it is built for numpyro, not {s.name}")
        return None
    if available_sampler("numpyro") != "numpyro":
        report("no warm start: numpyro is not installed")
        return None
    warm, why = warm_start(sampling_model(mmm), previous, s.chains, s.seed)
    if warm is None:
        report(f"no warm start from {previous.label}: {why}")
    else:
        report(f"warm start from {previous.label}: each chain starts at one of its draws and moves with its "
               f"covariance as a fixed dense mass matrix; {s.warm_tune} tuning steps for the step size")
    return warm

def refit_sampler(cfg: MMMConfig, draws: int) -> SamplerConfig:
    """The sampler of a refit that only predicts: at most ``draws`` draws per chain and as many tuning steps, both
    capped at the configured sampler's own, and never sampled again for a gate it misses (``max_draws`` None; one
    that diverges still is: ``inference.sampling.sample``)."""
    draws = min(draws, cfg.sampler.draws)
    return cfg.sampler.model_copy(update={"draws": draws, "tune": min(cfg.sampler.tune, draws), "max_draws": None})
