"""The ``validation`` and ``stability`` sections: quality gates, cross-validation and refresh-stability bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from mmm_assets.core.config.base import _Strict

#: Default bounds of the refresh-stability check (StabilityConfig) of the synthetic profile, from measured refreshes
#: of the reference scenario (1 % noise; one more clean week; 104 weeks x 2x250 draws and 208 weeks x 2x1500 draws):
#: mean ROAS and marginal ROAS moved at most 0.41 % and 0.56 %, budget shares at most 1.4 pp, no advice reversed.
#: One corrupted new week (its KPI halved or x1.5) moved ROAS 7.8-31 %, marginal ROAS 4.3-40 %, shares up to 6.6 pp.
#: 5 % and 5 pp sit 3.5-12x above the clean moves; every injected error trips one of them (details:
#: docs/performance.md, "Refresh-stability bounds").
STABILITY_ROAS_CHANGE_PCT = 5.0
STABILITY_SHARE_CHANGE_PP = 5.0
#: Each validation profile's stability bounds; a scenario's own `stability` settings are laid over its profile's.
#: real: measured on config/realistic.yaml (8 channels, two collinear pairs, 7 % noise; benchmarks/
#: stability_realistic.py: two data seeds x five clean weekly refreshes of 156-161 weeks, each warm-started from the
#: previous fit as a refresh is, and ten corrupted new weeks). Clean refreshes moved mean ROAS up to 14.0 %, marginal
#: ROAS up to 15.3 % (the same data with only the sampler seed changed: 4.3-6.0 %; the ROAS posteriors' 94 % HDIs are
#: +-80-130 % of their means here), and the advice replanned at the previous reference spend by at most 1.7 pp; one
#: of the ten reversed an advice (REDUCE -> INCREASE at a 1.5 pp share move). 20 %, 20 % and 3 pp sit 1.3-1.7x above
#: the clean moves and caught 6 of the 10 corrupted weeks (both halved KPIs, one KPI x 1.5, both x 10 spends, one
#: swap of two channels' spend); the other four moved ROAS and marginal ROAS less than some clean refresh did (two
#: of them the replanned shares by 2.1-2.4 pp). Reversals are shown, not flagged: every corrupted week that reversed
#: an advice tripped a bound anyway (docs/performance.md, "Refresh-stability bounds").
PROFILE_STABILITY: dict[str, dict] = {
    "synthetic": {"max_roas_change_pct": STABILITY_ROAS_CHANGE_PCT, "max_mroas_change_pct": STABILITY_ROAS_CHANGE_PCT,
                  "max_share_change_pp": STABILITY_SHARE_CHANGE_PP, "flag_action_flips": True},
    "real": {"max_roas_change_pct": 20.0, "max_mroas_change_pct": 20.0, "max_share_change_pp": 3.0,
             "flag_action_flips": False},
}
#: A validation profile: which gates hold a fit to which standard (see PROFILE_THRESHOLDS).
Profile = Literal["synthetic", "real"]

#: The gates every profile keeps: a fit that has not converged is not a fit, on any data.
CONVERGENCE_THRESHOLDS = ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences_max")


class Thresholds(_Strict):
    """The blocking gates' thresholds. A threshold left unset takes its profile's value (PROFILE_THRESHOLDS); null
    (None) after that means the metric is reported but not gated."""

    r2_min: float | None = Field(default=None, le=1)
    mape_max_pct: float | None = Field(default=None, gt=0, le=100)
    oos_r2_min: float | None = Field(default=None, le=1)
    oos_mape_max_pct: float | None = Field(default=None, gt=0, le=100)
    rhat_max: float | None = Field(default=None, ge=1, le=2)
    ess_bulk_min: float | None = Field(default=None, gt=0)
    ess_tail_min: float | None = Field(default=None, gt=0)
    divergences_max: int | None = Field(default=None, ge=0)
    lam_rel_error_max: float | None = Field(default=None, gt=0, le=1)
    alpha_abs_error_max: float | None = Field(default=None, gt=0, le=1)
    curve_rel_error_max: float | None = Field(
        default=None, gt=0, description="Largest error of a channel's response curve against the truth (relative)."
    )
    mean_lag_abs_error_max: float | None = Field(
        default=None, gt=0, description="Largest error of a channel's mean carry-over lag against the truth (weeks)."
    )
    holdout_mase_max: float | None = Field(
        default=None, gt=0, description="Largest holdout MAE relative to the in-sample MAE of a seasonal naive forecast."
    )
    holdout_coverage_min: float | None = Field(
        default=None, ge=0, le=1, description="Smallest share of holdout weeks inside the forecast's 94 % HDI."
    )
    residual_acf1_max: float | None = Field(
        default=None, gt=0, le=1, description="Largest lag-1 autocorrelation of the in-sample residuals."
    )
    holdout_noise_ratio_max: float | None = Field(
        default=None, gt=0, description="Largest holdout RMSE relative to the noise the model estimates (its sigma)."
    )
    unmeasured_spend_share_max: float | None = Field(
        default=None, ge=0, le=1, description="Largest share of the paid spend on channels whose ROAS is still at its "
        "prior (core.evaluation.measurement); no profile gates it: the channels_measured check warns instead.",
    )


#: Each profile's thresholds; a scenario's own `validation.thresholds` are laid over them.
#: synthetic: the project's generator, whose noise and model are known (1 % noise in the reference scenario): strict
#: fit and parameter-recovery gates. real: data nobody here generated, judged against honest references (a seasonal
#: naive forecast, the forecast's own uncertainty, the noise the model estimates) instead of absolute fit; how each
#: value was chosen: README "Validating on real data" and docs/validation.md.
PROFILE_THRESHOLDS: dict[str, dict[str, float]] = {
    "synthetic": {
        "r2_min": 0.95, "mape_max_pct": 2.0, "oos_r2_min": 0.90, "oos_mape_max_pct": 2.0,
        "rhat_max": 1.01, "ess_bulk_min": 400, "ess_tail_min": 400, "divergences_max": 0,
        "lam_rel_error_max": 0.05, "alpha_abs_error_max": 0.05, "curve_rel_error_max": 0.1,
        "mean_lag_abs_error_max": 0.1,
    },
    "real": {
        "rhat_max": 1.01, "ess_bulk_min": 400, "ess_tail_min": 400, "divergences_max": 0,
        "holdout_mase_max": 1.0, "holdout_coverage_min": 0.75, "holdout_noise_ratio_max": 2.0,
        "residual_acf1_max": 0.2,
    },
}


#: Each profile's NUTS target acceptance rate (sampler.target_accept: null). Real data's posteriors are harder:
#: on config/realistic.yaml (8 channels, 7 % noise) 0.9 left 1-3 divergences in a third of the seeds measured, 0.95
#: none in 4 of 4 seeds, for ~1.4x the reference scenario's sampling time (README "Validating on real data").
PROFILE_TARGET_ACCEPT: dict[str, float] = {"synthetic": 0.9, "real": 0.95}


def resolve_thresholds(profile: str, overrides: dict) -> dict:
    """The profile's thresholds with the ones a scenario sets laid over them (an explicit null switches a gate off,
    except the convergence gates, which every fit needs)."""
    off = sorted(name for name in CONVERGENCE_THRESHOLDS if name in overrides and overrides[name] is None)
    if off:
        raise ValueError(f"validation.thresholds: {', '.join(off)} cannot be null: every fit is held to convergence")
    return {**PROFILE_THRESHOLDS[profile], **overrides}


class CrossValidationConfig(_Strict):
    """Rolling-origin (time-slice) cross-validation: each fold refits on the weeks before its origin and forecasts
    the ``horizon_weeks`` after it. Origins are anchored at the end of the data (the last fold forecasts its last
    weeks) and step back ``step_weeks`` at a time while a fold keeps at least ``initial_weeks`` to train on."""

    enabled: bool = Field(default=False, description="Run the cross-validation (one MCMC refit per fold: slow).")
    initial_weeks: int = Field(default=78, ge=8, description="Fewest weeks a fold trains on (the earliest fold's).")
    horizon_weeks: int = Field(default=8, ge=1, le=52, description="Weeks each fold forecasts after its training.")
    step_weeks: int = Field(default=13, ge=1, le=104, description="Weeks between two consecutive folds' origins.")
    max_folds: int | None = Field(
        default=4, ge=1, le=52, description="Keep at most this many folds, the most recent ones; null = every fold."
    )
    draws: int = Field(
        default=300, ge=50, description="Draws per chain of each fold's refit (at most sampler.draws); only predicts."
    )
    mape_max_pct: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Largest allowed mean out-of-sample MAPE (%) over the folds; null = thresholds.oos_mape_max_pct.",
    )
    crps_rel_max_pct: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Largest allowed mean CRPS as % of the mean actual over the folds; null = reported, not gated.",
    )


class AdequacyConfig(_Strict):
    """Identification checks on the feature table before fitting (asset checks on mmm_features): can the data tell
    the channels apart at all? Each bound WARNs; the ``block_`` ones stop the run, where no fit could be trusted (see
    mmm_assets/core/evaluation/adequacy.py; how each default was chosen: README "Identification checks")."""

    max_abs_correlation: float = Field(
        default=0.8, gt=0, le=1, description="WARN when two channels' weekly spend correlate beyond this (|r|)."
    )
    max_vif: float = Field(default=10.0, gt=1, description="WARN when a channel's variance inflation factor exceeds this.")
    min_weeks_per_parameter: float = Field(
        default=3.0, gt=0, description="WARN when the training weeks per free model parameter fall below this."
    )
    block_weeks_per_parameter: float = Field(
        default=1.0, gt=0, description="Block when the training weeks per free model parameter fall below this."
    )
    min_spend_cv: float = Field(
        default=0.1, ge=0, description="WARN when a channel's spend varies less than this (std / mean)."
    )
    max_zero_share: float = Field(
        default=0.75, ge=0, le=1, description="WARN when a channel spends nothing in more than this share of weeks."
    )


class PlausibilityConfig(_Strict):
    """Business plausibility of a fitted model (non-blocking checks that alert): what a marketer would question.
    How each default was measured: core.evaluation.plausibility and core.evaluation.prior_checks (module docstrings;
    benchmarks/plausibility.py)."""

    roas_min: float = Field(default=0.05, ge=0, description="WARN when a channel's mean ROAS is below this.")
    roas_max: float = Field(default=20.0, gt=0, description="WARN when a channel's mean ROAS is above this.")
    max_channel_share: float = Field(
        default=0.5, gt=0, le=1, description="WARN when one channel explains more than this share of the KPI."
    )
    max_media_share: float = Field(
        default=0.8, gt=0, le=1, description="WARN when media together explain more than this share of the KPI."
    )
    prior_predictive_max_orders: float = Field(
        default=2.0,
        gt=0,
        description="Block when the prior predictive's typical KPI is more than this many orders of magnitude "
        "(powers of 10) off the observed KPI's.",
    )


class ValidationConfig(_Strict):
    """How a fit is judged: holdout weeks, minimum history, thresholds, cross-validation."""
    holdout_weeks: int = Field(ge=0, le=52, description="Weeks held out for the out-of-sample fit; 0 disables it.")
    holdout_draws: int = Field(
        default=500, ge=50, description="Draws per chain of the holdout refit: it only predicts, its diagnostics gate nothing."
    )
    holdout_method: Literal["psis", "refit"] = Field(
        default="psis",
        description="psis: reweight the fit's own posterior to leave the last weeks out (Pareto-smoothed importance "
        "sampling), refitting only when the Pareto k is above holdout_pareto_k_max; refit: always refit without them.",
    )
    holdout_pareto_k_max: float = Field(
        default=0.7, gt=0, le=1, description="Largest Pareto k at which the reweighted posterior stands in for a refit."
    )
    min_weeks: int = Field(ge=8)
    profile: Profile | None = Field(
        default=None,
        description="synthetic: strict fit and recovery gates; real: skill, coverage and noise gates; null = synthetic "
        "for data.source synthetic, real for files.",
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds, description="Thresholds laid over the profile's (PROFILE_THRESHOLDS)."
    )
    cross_validation: CrossValidationConfig = Field(default_factory=CrossValidationConfig)
    adequacy: AdequacyConfig = Field(default_factory=AdequacyConfig)
    plausibility: PlausibilityConfig = Field(default_factory=PlausibilityConfig)

    @model_validator(mode="after")
    def _folds_fit(self) -> ValidationConfig:
        cv = self.cross_validation
        if cv.enabled and cv.initial_weeks < self.min_weeks:  # the defaults must not break a scenario that does not CV
            raise ValueError(
                f"validation.cross_validation.initial_weeks ({cv.initial_weeks}) must be at least validation.min_weeks "
                f"({self.min_weeks}): a fold trains on no fewer weeks than a model may be fitted on"
            )
        return self

    @property
    def cv_mape_max_pct(self) -> float | None:
        """The cross-validation's mean-MAPE threshold: its own, else the holdout's."""
        own = self.cross_validation.mape_max_pct
        return own if own is not None else self.thresholds.oos_mape_max_pct


class StabilityConfig(_Strict):
    """How far a refresh's ROAS and budget advice may move from the previous champion's before a person should look.

    A non-blocking (WARN) check: a change beyond these bounds does not stop the refresh, it asks for a review. A
    bound left unset takes the validation profile's (PROFILE_STABILITY); the field defaults are the synthetic ones.
    The budget share compared is the champion's plan at the previous plan's reference spend and total
    (core/evaluation/stability.py), so a new week's move of the recent-spend window does not count."""

    max_roas_change_pct: float = Field(
        default=STABILITY_ROAS_CHANGE_PCT,
        gt=0,
        le=1000,
        description="Largest relative change (%) of a channel's mean ROAS from the previous champion's.",
    )
    max_mroas_change_pct: float | None = Field(
        default=STABILITY_ROAS_CHANGE_PCT,
        gt=0,
        le=1000,
        description="Largest relative change (%) of a channel's mean marginal ROAS (it drives the advice); null = "
        "shown, not flagged.",
    )
    max_share_change_pp: float = Field(
        default=STABILITY_SHARE_CHANGE_PP,
        gt=0,
        le=100,
        description="Largest change of a channel's share of the proposed budget, in percentage points.",
    )
    flag_action_flips: bool = Field(
        default=True,
        description="Flag a channel whose advice reverses (INCREASE <-> REDUCE) since the last champion (profile real: "
        "false, shown only).",
    )
