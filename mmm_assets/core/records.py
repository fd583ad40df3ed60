"""Small records passed between pipeline steps. Light on purpose: importing them does not import PyMC."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class FittedModel:
    """Where a fitted model was saved and how the fit went."""

    path: str
    scenario: str
    sampler: str
    chains: int
    draws: int
    tune: int
    wall_seconds: float
    diagnostics: dict[str, float]
    data_version: str
    mlflow_run_id: str
    model_version: str
    #: The ``model.candidates`` specification fitted (None: the scenario's ``model`` as it is).
    specification: str | None = None


@dataclass(frozen=True)
class ChosenFit:
    """The chosen candidate's fit, saved by model_comparison so mmm_posterior takes it instead of fitting again."""

    path: str
    sampler: str
    wall_seconds: float
    diagnostics: dict[str, float]
    worst_rhat_parameter: str
    draws: int
    tune: int


@dataclass(frozen=True)
class ModelChoice:
    """Which specification of ``model.candidates`` the graph fits (core.evaluation.comparison), and why.

    ``selected`` None: the scenario's ``model`` as it is (no candidates, or none passed every gate). ``table``: one
    row per candidate (empty without candidates)."""

    selected: str | None
    reason: str
    table: pd.DataFrame
    fit: ChosenFit | None = None


@dataclass(frozen=True)
class PriorChecks:
    """What the model believed before the data (core.evaluation.prior_checks): its prior predictive against the
    observed KPI's scale, and per parameter how far the data moved it from its prior."""

    #: The blocking check's name (on mmm_validation).
    CHECK = "prior_predictive_scale"
    #: The WARN check's name (on mmm_validation): which channels' ROAS the data measured.
    MEASURED_CHECK = "channels_measured"

    prior_level: float
    observed_level: float
    orders_apart: float
    max_orders: float
    message: str
    band: pd.DataFrame
    prior_posterior: pd.DataFrame

    @property
    def passed(self) -> bool:
        """Whether the prior predictive is within ``max_orders`` powers of 10 of the observed KPI."""
        return bool(self.orders_apart <= self.max_orders)


@dataclass(frozen=True)
class ValidationReport:
    """Every validation metric, the gate results and (synthetic data) the parameter recovery table."""

    metrics: dict[str, float]
    gates: list[dict]
    recovery: pd.DataFrame | None = None
    in_sample: pd.DataFrame | None = None
    holdout: pd.DataFrame | None = None
    model_version: str | None = None
    prior_checks: PriorChecks | None = None
    #: What the data cannot tell apart and what would help (core.evaluation.adequacy.identification_summary); empty
    #: when every identification check passed. Shown with a failed gate, since weak identification is the usual cause.
    identification: str = ""
    #: Per channel, its ROAS before and after the data and whether the data measured it
    #: (core.evaluation.measurement.channel_measurement); None when not measured.
    measurement: pd.DataFrame | None = None

    def failed_gates(self) -> list[str]:
        """The names of the gates that failed (the prior predictive's scale check included)."""
        failed = [g["gate"] for g in self.gates if not g["passed"]]
        if self.prior_checks is not None and not self.prior_checks.passed:
            failed.append(PriorChecks.CHECK)
        return failed


@dataclass(frozen=True)
class Champion:
    """The registry's champion a run's decisions use: its posterior file and where it came from."""

    path: str
    model_name: str
    version: str
    data_version: str
    mlflow_run_id: str
    source: str
    #: Which channels' ROAS the data measured (core.evaluation.measurement), as the champion's validation found:
    #: the decisions say which of their figures restate the priors without drawing the prior again.
    measurement: pd.DataFrame | None = None
