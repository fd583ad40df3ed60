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


@dataclass(frozen=True)
class ValidationReport:
    """Every validation metric, the gate results and (synthetic data) the parameter recovery table."""

    metrics: dict[str, float]
    gates: list[dict]
    recovery: pd.DataFrame | None = None
    in_sample: pd.DataFrame | None = None
    holdout: pd.DataFrame | None = None
    model_version: str | None = None

    def failed_gates(self) -> list[str]:
        """The names of the gates that failed."""
        return [g["gate"] for g in self.gates if not g["passed"]]


@dataclass(frozen=True)
class Champion:
    """The registry's champion a run's decisions use: its posterior file and where it came from."""

    path: str
    model_name: str
    version: str
    data_version: str
    mlflow_run_id: str
    source: str
