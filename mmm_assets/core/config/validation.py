"""The ``validation`` and ``stability`` sections: quality gates, cross-validation and refresh-stability bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from mmm_assets.core.config.base import _Strict

#: Default bounds of the refresh-stability check (StabilityConfig), from measured refreshes of the synthetic
#: scenarios (one more clean week; 104 weeks x 2x250 draws and 208 weeks x 2x1500 draws): mean ROAS and marginal
#: ROAS moved at most 0.41 % and 0.56 %, budget shares at most 1.4 pp, no advice reversed. One corrupted new week
#: (its KPI halved or x1.5) moved ROAS 7.8-31 %, marginal ROAS 4.3-40 %, shares up to 6.6 pp. 5 % and 5 pp sit
#: 3.5-12x above the clean moves; every injected error trips one of them (details: docs/performance.md,
#: "Refresh-stability bounds").
STABILITY_ROAS_CHANGE_PCT = 5.0
STABILITY_SHARE_CHANGE_PP = 5.0
class Thresholds(_Strict):
    """The blocking gates' thresholds (fit, convergence, parameter recovery)."""
    r2_min: float = Field(le=1)
    mape_max_pct: float = Field(gt=0, le=100)
    oos_r2_min: float = Field(le=1)
    oos_mape_max_pct: float = Field(gt=0, le=100)
    rhat_max: float = Field(ge=1, le=2)
    ess_bulk_min: float = Field(gt=0)
    ess_tail_min: float = Field(gt=0)
    divergences_max: int = Field(ge=0)
    lam_rel_error_max: float = Field(gt=0, le=1)
    alpha_abs_error_max: float = Field(gt=0, le=1)


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
    thresholds: Thresholds
    cross_validation: CrossValidationConfig = Field(default_factory=CrossValidationConfig)

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
    def cv_mape_max_pct(self) -> float:
        """The cross-validation's mean-MAPE threshold: its own, else the holdout's."""
        own = self.cross_validation.mape_max_pct
        return own if own is not None else self.thresholds.oos_mape_max_pct


class StabilityConfig(_Strict):
    """How far a refresh's ROAS and budget advice may move from the previous champion's before a person should look.

    A non-blocking (WARN) check: a change beyond these bounds does not stop the refresh, it asks for a review."""

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
        default=True, description="Flag a channel whose advice reverses (INCREASE <-> REDUCE) since the last champion."
    )
