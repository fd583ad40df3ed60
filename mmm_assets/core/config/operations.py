"""The ``operations``, ``paths`` and ``markets`` sections: how the graph runs unattended, where outputs go and
which markets a scenario covers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from mmm_assets.core.config.base import _check_identifier, _Strict


class OperationsConfig(_Strict):
    """How the graph runs unattended: the weekly schedule, alert destinations, MLflow, links back to the UI."""

    schedule_cron: str = Field(default="0 6 * * 1", description="Weekly refresh; default Mondays 06:00.")
    schedule_timezone: str = Field(default="UTC", description="IANA time zone of the schedule, e.g. Europe/Berlin.")
    ui_base_url: str = Field(default="http://127.0.0.1:3000", description="Dagster UI address used in alert links.")
    freshness_days: int = Field(
        default=8, ge=1, le=366, description="The posterior and the budget are stale when older than this."
    )
    alert_webhook_env: str = Field(
        default="MMM_ALERT_WEBHOOK_URL",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the webhook URL (a secret: never in the YAML, never logged).",
    )
    mlflow_tracking_uri_env: str = Field(default="MLFLOW_TRACKING_URI", pattern=r"^[A-Z_][A-Z0-9_]*$")
    mlflow_ui_url: str = Field(default="http://127.0.0.1:5000", description="`make mlflow` serves the local store here.")
    mlflow_experiment: str = Field(default="mmm_assets", min_length=1)
    registered_model: str = Field(default="mmm_assets", min_length=1)
    duckdb_lock_timeout_s: float = Field(
        default=60, ge=0, le=3600, description="How long to wait for a DuckDB file another process has locked."
    )
    min_free_disk_mb: float = Field(
        default=256, ge=0, description="A run stops before fitting when a disk of the outputs has less free space."
    )
    max_parallel_runs: int | None = Field(
        default=None, ge=1, le=256,
        description="`python -m mmm_assets run` over several markets: how many market runs go at once, each in a "
        "worker process that refreshes one market after another; null = as many as the machine's cores and its "
        "available memory allow (mmm_assets/cli.py, RUN_PEAK_MIB).",
    )
    pool_wait_timeout_s: float = Field(
        default=3600, gt=0, le=7 * 24 * 3600,
        description=(
            "`python -m mmm_assets run`: how long a fit step waits for a slot of the mmm_fit pool held by another "
            "live run before the refresh fails (runs whose process died are released at once, whatever this is). "
            "An hour covers the queue of a dozen markets' fits one after another on a laptop."
        ),
    )

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin'") from None
        return value


class PathsConfig(_Strict):
    """Where the outputs are written (relative paths resolve against the project root)."""
    duckdb: Path
    models_dir: Path
    reports_dir: Path = Path("data/reports")
    alerts_log: Path = Path("data/alerts.jsonl")
    mlflow_dir: Path = Path("mlruns")


class MarketsConfig(_Strict):
    """Several markets (countries, brands, business units) in one scenario: one partition of the graph each."""

    names: list[str] = Field(
        default_factory=list,
        description="The markets; empty with data.files.market_column = every market found in the landing file.",
    )
    pooling: Literal["separate", "pooled"] = Field(
        default="separate",
        description="separate: one model per market; pooled: one hierarchical model across the markets.",
    )
    spread: Literal["auto", "learnt", "fixed"] = Field(
        default="auto",
        description="pooled: how much each channel's media parameters differ between markets. learnt: estimated "
        "from the data before sampling (empirical Bayes, one spread per parameter and channel); fixed: the stated "
        "assumption (about +-20 % in saturation lam, +-30 % in beta); auto: learnt from 5 markets on, fixed below "
        "(core.modelling.spread.LEARNT_FROM_MARKETS: fewer markets say too little about how far apart they are).",
    )
    data: dict[str, dict] = Field(
        default_factory=dict,
        description="Per market, settings laid over the scenario's `data` section (e.g. another seed or truth).",
    )
    population: dict[str, float] = Field(
        default_factory=dict,
        description="pooled: every market's population (or another measure of its size), to scale each market's "
        "target and channels in proportion to it, as Meridian does, instead of by the market's own maxima; empty = "
        "each market's maxima. model.scaling's fixed scales win over these.",
    )

    @model_validator(mode="after")
    def _known(self) -> MarketsConfig:
        for name in self.names:
            _check_identifier(name, "market")
        repeated = sorted({n for n in self.names if self.names.count(n) > 1})
        if repeated:
            raise ValueError(f"market(s) {repeated} listed more than once")
        unknown = sorted(set(self.data) - set(self.names))
        if unknown:
            raise ValueError(f"markets.data names {unknown}, which are not in markets.names {self.names}")
        bad = {name: size for name, size in self.population.items() if not size > 0}
        if bad:
            raise ValueError(f"markets.population must be > 0, got {bad}")
        if self.population and self.pooling != "pooled":
            raise ValueError("markets.population scales the markets of a pooled model (markets.pooling: pooled); "
                             "a market fitted on its own is scaled by its own maxima or model.scaling")
        if self.population and self.names and set(self.population) != set(self.names):
            raise ValueError(f"markets.population must give every market's population: markets {self.names}, got "
                             f"{sorted(self.population)}")
        return self
