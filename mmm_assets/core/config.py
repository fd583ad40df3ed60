"""Typed scenario configuration, loaded from one YAML file per scenario.

Every knob of the pipeline lives here: where the data comes from, how its columns map to the model's names, the
model and sampler settings, the validation gates and the paths of the outputs. Nothing else in the project holds a
magic constant. Errors name the file, the offending key and what was expected.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

#: Environment variables that override the configuration (documented in the README).
ENV_CONFIG = "MMM_CONFIG"
ENV_DUCKDB = "MMM_DUCKDB_PATH"

#: Canonical column names are used as SQL identifiers and MMM variable names, so they are kept to a safe alphabet.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Names the pipeline uses itself for the date and target columns of the feature table.
DATE_COLUMN = "date"
TARGET_COLUMN = "y"
RESERVED = {DATE_COLUMN, TARGET_COLUMN}

PROJECT_MARKERS = ("pyproject.toml", "workspace.yaml")
#: Largest absolute value a landing file may hold by default: above it a number is a units or export mistake.
DEFAULT_MAX_ABS_VALUE = 1e12


class ConfigError(ValueError):
    """A configuration file that cannot be used, with a message that says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_identifier(name: str, what: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(
            f"{what} name {name!r} is not allowed: use lower-case letters, digits and '_', starting with a letter "
            "(at most 63 characters)"
        )
    if name in RESERVED:
        raise ValueError(f"{what} name {name!r} is reserved for the pipeline's own {name!r} column")
    return name


class SyntheticChannel(_Strict):
    """Ground truth of one synthetic channel: spend range and the true response parameters."""

    spend_min: float = Field(ge=0)
    spend_max: float = Field(gt=0)
    beta: float = Field(gt=0, description="Channel effect, in outcome-scale units at saturation.")
    saturation_lam: float = Field(gt=0, description="Logistic saturation rate on max-scaled spend.")
    adstock_alpha: float = Field(ge=0, lt=1, description="Geometric adstock retention rate.")

    @model_validator(mode="after")
    def _range(self) -> SyntheticChannel:
        if self.spend_max <= self.spend_min:
            raise ValueError(f"spend_max ({self.spend_max}) must be greater than spend_min ({self.spend_min})")
        return self


class SyntheticSource(_Strict):
    """A generator with known ground truth (see :mod:`mmm_assets.core.generator`)."""

    start_date: dt.date
    end_date: dt.date
    channels: dict[str, SyntheticChannel] = Field(min_length=1)
    intercept: float = Field(ge=0)
    outcome_scale: float = Field(gt=0)
    noise_sigma: float = Field(ge=0, description="Noise standard deviation, in outcome-scale units.")
    adstock_l_max: int = Field(ge=1, le=52)
    seed: int = Field(ge=0)

    @field_validator("channels")
    @classmethod
    def _names(cls, value: dict[str, SyntheticChannel]) -> dict[str, SyntheticChannel]:
        for name in value:
            _check_identifier(name, "channel")
        return value

    @model_validator(mode="after")
    def _dates(self) -> SyntheticSource:
        if self.end_date <= self.start_date:
            raise ValueError(f"end_date ({self.end_date}) must be after start_date ({self.start_date})")
        return self


class ColumnMapping(_Strict):
    """How a landing file's own column names map to the pipeline's names (canonical name -> source column)."""

    date: str = Field(min_length=1)
    target: str = Field(min_length=1)
    channels: dict[str, str] = Field(min_length=1)
    controls: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> ColumnMapping:
        for name in self.channels:
            _check_identifier(name, "channel")
        for name in self.controls:
            _check_identifier(name, "control")
        both = set(self.channels) & set(self.controls)
        if both:
            raise ValueError(f"{sorted(both)} named both as channel and control")
        sources = [self.date, self.target, *self.channels.values(), *self.controls.values()]
        repeated = sorted({s for s in sources if sources.count(s) > 1})
        if repeated:
            raise ValueError(f"source column(s) {repeated} mapped more than once; each source column maps to one name")
        return self


class FilesSource(_Strict):
    """Weekly spend + KPI files (CSV or Parquet) dropped in a landing folder."""

    landing_dir: Path
    file: str | None = Field(
        default=None, description="File name inside landing_dir; when null the newest *.csv / *.parquet is used."
    )
    aggregate_daily: bool = Field(
        default=False,
        description="The file has one row per day: sum spend and target into weeks (controls averaged). Opt-in.",
    )
    max_abs_value: float = Field(
        default=DEFAULT_MAX_ABS_VALUE, gt=0, description="A number beyond ±this is rejected as a units mistake."
    )
    columns: ColumnMapping

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).name != value or value in {".", ".."}):
            raise ValueError(f"file {value!r} must be a plain file name inside landing_dir, not a path")
        return value


class DataConfig(_Strict):
    source: Literal["synthetic", "files"]
    synthetic: SyntheticSource | None = None
    files: FilesSource | None = None

    @model_validator(mode="after")
    def _chosen_present(self) -> DataConfig:
        if getattr(self, self.source) is None:
            raise ValueError(f"data.source is {self.source!r} but there is no data.{self.source} section")
        return self


class ModelConfig(_Strict):
    adstock_l_max: int = Field(ge=1, le=52, description="Longest carry-over of the geometric adstock, in weeks.")
    yearly_seasonality: int | None = Field(default=None, ge=1, le=10, description="Fourier order, or null for none.")


class SamplerConfig(_Strict):
    name: Literal["nutpie", "pymc", "numpyro"] = "nutpie"
    chains: int = Field(ge=1, le=16)
    draws: int = Field(ge=10)
    tune: int = Field(ge=10)
    target_accept: float = Field(gt=0.5, lt=1)
    seed: int = Field(ge=0)


class Thresholds(_Strict):
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


class ValidationConfig(_Strict):
    holdout_weeks: int = Field(ge=0, le=52, description="Weeks held out for the out-of-sample fit; 0 disables it.")
    holdout_draws: int = Field(
        default=500, ge=50, description="Draws per chain of the holdout refit: it only predicts, its diagnostics gate nothing."
    )
    min_weeks: int = Field(ge=8)
    thresholds: Thresholds


class BudgetSettings(_Strict):
    """What to optimise: horizon, total budget, bounds per channel, utility and the budget scenarios."""

    horizon_weeks: int = Field(default=4, ge=1, le=52, description="Weeks to plan, starting after the data.")
    total_budget: float | None = Field(
        default=None, gt=0, description="Total over the horizon; null = what was spent over the last horizon."
    )
    bounds: Literal["relative", "absolute"] = "relative"
    relative_bound: float = Field(
        default=0.5, gt=0, le=10, description="Each channel may move by this fraction of its current spend."
    )
    absolute_bounds: dict[str, tuple[float, float]] | None = Field(
        default=None, description="(low, high) per channel, totals over the horizon; needs bounds: absolute."
    )
    utility: Literal["mean", "var", "cvar"] = "mean"
    risk_level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of var / cvar.")
    scenario_levels: list[float] = Field(
        default=[0.5, 1.0, 1.5], min_length=1, description="Multiples of the base budget for the scenarios."
    )
    total_tolerance: float = Field(
        default=0.001, gt=0, le=0.1, description="Allowed relative gap between the plan's total and the budget."
    )

    @field_validator("absolute_bounds")
    @classmethod
    def _ordered(cls, value: dict[str, tuple[float, float]] | None) -> dict[str, tuple[float, float]] | None:
        for channel, (low, high) in (value or {}).items():
            if low < 0:
                raise ValueError(f"{channel}: low bound {low:g} is negative; spend cannot be below 0")
            if low > high:
                raise ValueError(f"{channel}: low bound {low:g} is above high bound {high:g}; give (low, high)")
        return value

    @field_validator("scenario_levels")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        bad = [level for level in value if not level > 0]
        if bad:
            raise ValueError(f"scenario levels must be > 0 (multiples of the base budget), got {bad}")
        return value

    @model_validator(mode="after")
    def _bounds_given(self) -> BudgetSettings:
        if self.bounds == "absolute" and self.absolute_bounds is None:
            raise ValueError(
                "bounds is 'absolute' but absolute_bounds is missing: give (low, high) per channel, "
                "as totals over the horizon"
            )
        if self.bounds == "relative" and self.absolute_bounds is not None:
            raise ValueError("absolute_bounds is given but bounds is 'relative'; set bounds: absolute to use them")
        return self


class DecisionsConfig(_Strict):
    """What the decision assets compute: the budget plan, the response-curve grid, the recommendation band."""

    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    response_curve_points: int = Field(default=41, ge=5, le=401, description="Grid points per response curve.")
    response_curve_max_multiple: float = Field(
        default=2.0, ge=2.0, le=10.0, description="Grid end, as a multiple of the channel's largest weekly spend."
    )
    hold_band_pct: float = Field(
        default=5.0, ge=0, le=100, description="A proposed change within ±this % of current spend is a HOLD."
    )


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
    duckdb: Path
    models_dir: Path
    reports_dir: Path = Path("data/reports")
    alerts_log: Path = Path("data/alerts.jsonl")
    mlflow_dir: Path = Path("mlruns")


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class MMMConfig(_Strict):
    """One scenario: data, model, sampler, gates and paths."""

    scenario: Name
    data: DataConfig
    model: ModelConfig
    sampler: SamplerConfig
    validation: ValidationConfig
    decisions: DecisionsConfig = Field(default_factory=DecisionsConfig)
    operations: OperationsConfig = Field(default_factory=OperationsConfig)
    paths: PathsConfig

    @property
    def channels(self) -> list[str]:
        if self.data.source == "synthetic":
            assert self.data.synthetic is not None
            return list(self.data.synthetic.channels)
        assert self.data.files is not None
        return list(self.data.files.columns.channels)

    @property
    def controls(self) -> list[str]:
        if self.data.source == "files":
            assert self.data.files is not None
            return list(self.data.files.columns.controls)
        return []

    @model_validator(mode="after")
    def _enough_weeks(self) -> MMMConfig:
        if self.validation.holdout_weeks and self.validation.holdout_weeks >= self.validation.min_weeks:
            raise ValueError(
                f"validation.holdout_weeks ({self.validation.holdout_weeks}) must be smaller than "
                f"validation.min_weeks ({self.validation.min_weeks})"
            )
        return self


def project_root_for(path: Path) -> Path:
    """The nearest folder at or above ``path`` holding a project marker; the file's own folder otherwise."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return start


def _format_errors(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see config/default.yaml for the keys)"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_config(raw: object, source: str = "<config>", root: Path | None = None) -> MMMConfig:
    """Validate a mapping (as read from YAML) and resolve its relative paths against ``root``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, found {type(raw).__name__}")
    try:
        cfg = MMMConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source} is not a valid scenario configuration:\n{_format_errors(err)}") from None
    base = (root or Path.cwd()).resolve()

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    duckdb_path = Path(os.environ[ENV_DUCKDB]) if os.environ.get(ENV_DUCKDB) else cfg.paths.duckdb
    update: dict = {
        "paths": PathsConfig(
            duckdb=absolute(duckdb_path),
            models_dir=absolute(cfg.paths.models_dir),
            reports_dir=absolute(cfg.paths.reports_dir),
            alerts_log=absolute(cfg.paths.alerts_log),
            mlflow_dir=absolute(cfg.paths.mlflow_dir),
        )
    }
    if cfg.data.files is not None:
        files = cfg.data.files.model_copy(update={"landing_dir": absolute(cfg.data.files.landing_dir)})
        update["data"] = cfg.data.model_copy(update={"files": files})
    return cfg.model_copy(update=update)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error instead of "the last one wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by the keys after it
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # the safe loader itself reports an unhashable key
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r}: give each key once (the second would silently replace the first)",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def merged(base: dict, overrides: dict) -> dict:
    """``overrides`` laid over ``base``, nested mappings key by key; the result shares nothing with either input."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if nested else copy.deepcopy(value)
    return out


def _read_raw(file: Path, seen: tuple[Path, ...] = ()) -> object:
    """The YAML mapping of ``file``; an ``extends: other.yaml`` key (relative to the file) merges it over another."""
    if not file.is_file():
        raise ConfigError(f"scenario configuration {file} does not exist (set {ENV_CONFIG} or pass another file)")
    if file.resolve() in seen:
        raise ConfigError(f"{file}: 'extends' forms a cycle through {', '.join(map(str, seen))}")
    try:
        with file.open(encoding="utf-8") as stream:  # error marks then name the file
            raw = yaml.load(stream, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{file} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    base = _read_raw(file.parent / str(raw.pop("extends")), (*seen, file.resolve()))
    if not isinstance(base, dict):
        raise ConfigError(f"{file}: the file it extends is not a mapping of settings")
    return merged(base, raw)


def load_config(path: str | os.PathLike[str]) -> MMMConfig:
    """Load and validate one scenario file; relative paths in it are relative to the project folder."""
    file = Path(path)
    return parse_config(_read_raw(file), source=str(file), root=project_root_for(file))
