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
    PrivateAttr,
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
#: The column that says which market a row belongs to (landing files with several markets, stored tables).
MARKET_COLUMN = "market"
RESERVED = {DATE_COLUMN, TARGET_COLUMN, MARKET_COLUMN}
#: The one market of a scenario that lists none.
DEFAULT_MARKET = "national"

PROJECT_MARKERS = ("pyproject.toml", "workspace.yaml")
#: Largest absolute value a landing file may hold by default: above it a number is a units or export mistake.
DEFAULT_MAX_ABS_VALUE = 1e12
#: Largest landing file read by default, in MB (MiB). A weekly export is small: 500 markets x 10 years of weeks x 40
#: columns of 10-character numbers is ~110 MB, so 200 MB leaves room above the largest plausible file, while a
#: runaway export (every campaign, every day) is stopped before it is read. Reading a 200 MB CSV takes at most
#: ~450 MiB above the imports, when every column is mapped, ~110 MiB when most are not (benchmarks/ingest_memory.py;
#: the whole-file reader it replaced took 2.1-2.6 GiB).
DEFAULT_MAX_FILE_MB = 200.0
#: Deepest nesting of a scenario file (mappings and lists inside each other, the top-level mapping being level 1).
#: The deepest shipped setting is 6 levels down (data.synthetic.channels.<name>.spend_min's value); PyYAML builds
#: nodes recursively and overflows Python's stack (an uncaught RecursionError) a few hundred levels down, so the
#: limit sits well above any real layout and far below the crash.
MAX_YAML_DEPTH = 50
#: Default bounds of the refresh-stability check (StabilityConfig), from measured refreshes of the synthetic
#: scenarios (one more clean week; 104 weeks x 2x250 draws and 208 weeks x 2x1500 draws): mean ROAS and marginal
#: ROAS moved at most 0.41 % and 0.56 %, budget shares at most 1.4 pp, no advice reversed. One corrupted new week
#: (its KPI halved or x1.5) moved ROAS 7.8-31 %, marginal ROAS 4.3-40 %, shares up to 6.6 pp. 5 % and 5 pp sit
#: 3.5-12x above the clean moves; every injected error trips one of them (details: core/stability.py docstring).
STABILITY_ROAS_CHANGE_PCT = 5.0
STABILITY_SHARE_CHANGE_PP = 5.0


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


#: The sign an effect is constrained to: ``free`` lets the data decide.
Sign = Literal["positive", "negative", "free"]
#: Prefix of the indicator column of a calendar event in the feature frame (``event_<name>``).
EVENT_PREFIX = "event_"
#: Name of the linear-trend term (reserved when ``model.trend`` is on).
TREND_TERM = "trend"


class SyntheticChannel(_Strict):
    """Ground truth of one synthetic media channel: spend range, role and the true response parameters."""

    role: Literal["paid", "owned"] = Field(
        default="paid",
        description="paid: bought media with money spend (budgets may move it); owned: e.g. email or organic "
        "posts, whose column is activity volume, not money. Both get adstock + saturation and a positive effect.",
    )
    spend_min: float = Field(ge=0)
    spend_max: float = Field(gt=0)
    beta: float = Field(gt=0, description="Channel effect, in outcome-scale units at saturation.")
    saturation_lam: float = Field(gt=0, description="Logistic saturation rate on max-scaled spend.")
    adstock_alpha: float = Field(ge=0, lt=1, description="Geometric adstock retention rate.")
    follows: str | None = Field(
        default=None,
        description="Name of an earlier channel whose spend pattern this one copies (nearly collinear spend: "
        "the case the data alone cannot split and lift tests resolve).",
    )
    follow_noise: float = Field(
        default=0.1, ge=0, le=1, description="With follows: weight of this channel's own pattern (0 = exact copy)."
    )

    @model_validator(mode="after")
    def _range(self) -> SyntheticChannel:
        if self.spend_max <= self.spend_min:
            raise ValueError(f"spend_max ({self.spend_max}) must be greater than spend_min ({self.spend_min})")
        return self


class SyntheticCompetitor(_Strict):
    """Ground truth of a competitor's activity: carried over (adstock), not saturated, always hurting the outcome."""

    activity_min: float = Field(ge=0)
    activity_max: float = Field(gt=0)
    effect: float = Field(
        lt=0, description="Effect of the largest activity (after carry-over), in outcome-scale units; negative."
    )
    adstock_alpha: float = Field(ge=0, lt=1, description="Geometric adstock retention rate of the activity.")

    @model_validator(mode="after")
    def _range(self) -> SyntheticCompetitor:
        if self.activity_max <= self.activity_min:
            raise ValueError(
                f"activity_max ({self.activity_max}) must be greater than activity_min ({self.activity_min})"
            )
        return self


class SyntheticControl(_Strict):
    """Ground truth of a control variable (e.g. price): a persistent series around a level with a linear effect."""

    level: float = Field(description="Average value of the control.")
    sd: float = Field(gt=0, description="Standard deviation of the control around its level.")
    persistence: float = Field(
        default=0.8, ge=0, lt=1, description="Week-to-week autocorrelation of the control's deviations (AR(1))."
    )
    effect: float = Field(description="Effect per unit of the control, in outcome-scale units; any sign.")
    adstock_alpha: float = Field(
        default=0.0, ge=0, lt=1, description="Carry-over of the control's effect (0 = none)."
    )


class SyntheticSeasonality(_Strict):
    """A yearly cycle: ``amplitude * cos(2 pi (day of year - peak day) / 365.25)``."""

    amplitude: float = Field(ge=0, description="Half the peak-to-trough swing, in outcome-scale units.")
    peak_day: int = Field(default=355, ge=1, le=366, description="Day of the year of the seasonal peak.")


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
    competitors: dict[str, SyntheticCompetitor] = Field(
        default_factory=dict, description="Competitor activity series and their (negative) true effects."
    )
    controls: dict[str, SyntheticControl] = Field(
        default_factory=dict, description="Control series and their true effects."
    )
    trend: float = Field(default=0.0, description="Linear trend, in outcome-scale units per year (any sign).")
    seasonality: SyntheticSeasonality | None = Field(default=None, description="A true yearly cycle, or none.")
    events: dict[str, float] = Field(
        default_factory=dict,
        description="True effect (outcome-scale units per flagged week) of events named in model.calendar.",
    )

    @field_validator("channels")
    @classmethod
    def _names(cls, value: dict[str, SyntheticChannel]) -> dict[str, SyntheticChannel]:
        for name in value:
            _check_identifier(name, "channel")
        earlier: list[str] = []
        for name, channel in value.items():
            if channel.follows is not None and channel.follows not in earlier:
                raise ValueError(
                    f"channel {name!r} follows {channel.follows!r}, which is not a channel listed before it"
                )
            earlier.append(name)
        return value

    @model_validator(mode="after")
    def _dates(self) -> SyntheticSource:
        if self.end_date <= self.start_date:
            raise ValueError(f"end_date ({self.end_date}) must be after start_date ({self.start_date})")
        for name in self.competitors:
            _check_identifier(name, "competitor")
        for name in self.controls:
            _check_identifier(name, "control")
        names = [*self.channels, *self.competitors, *self.controls]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{repeated} named more than once across channels, competitors and controls")
        return self


class ColumnMapping(_Strict):
    """How a landing file's own column names map to the pipeline's names (canonical name -> source column).

    ``channels`` are the media columns (adstock + saturation, positive effect), ``controls`` every other explanatory
    column. Two lists refine their roles: ``owned`` names the channels that are owned media (email, organic: activity
    volume, not money; budgets never move them) and ``competitors`` the controls that are competitor activity
    (carried over, negative effect). Channels not in ``owned`` are paid media.
    """

    date: str = Field(min_length=1)
    target: str = Field(min_length=1)
    channels: dict[str, str] = Field(min_length=1)
    controls: dict[str, str] = Field(default_factory=dict)
    owned: list[str] = Field(default_factory=list, description="Channels that are owned media (not money spend).")
    competitors: list[str] = Field(default_factory=list, description="Controls that are competitor activity.")

    @model_validator(mode="after")
    def _unique(self) -> ColumnMapping:
        for name in self.channels:
            _check_identifier(name, "channel")
        for name in self.controls:
            _check_identifier(name, "control")
        both = set(self.channels) & set(self.controls)
        if both:
            raise ValueError(f"{sorted(both)} named both as channel and control")
        unknown = sorted(set(self.owned) - set(self.channels))
        if unknown:
            raise ValueError(f"owned lists {unknown}, which are not in channels {sorted(self.channels)}")
        unknown = sorted(set(self.competitors) - set(self.controls))
        if unknown:
            raise ValueError(f"competitors lists {unknown}, which are not in controls {sorted(self.controls)}")
        if self.channels and set(self.owned) == set(self.channels):
            raise ValueError("every channel is listed as owned; at least one paid (money) channel is needed")
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
    max_file_mb: float = Field(
        default=DEFAULT_MAX_FILE_MB, gt=0,
        description="A landing file larger than this many MB (MiB) is rejected before it is read.",
    )
    columns: ColumnMapping
    market_column: str | None = Field(
        default=None,
        min_length=1,
        description="Column of the file naming each row's market; the file then holds every market's weeks.",
    )

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


class TermSettings(_Strict):
    """How one non-media variable (competitor, control, calendar event, trend) enters the model.

    Unset fields take the role's default (see :mod:`mmm_assets.core.roles`): competitors are negative, carried over
    and not centred; controls free, not carried over and centred; events and the trend free, neither.
    """

    sign: Sign | None = Field(default=None, description="positive | negative | free; null = the role's default.")
    adstock: bool | None = Field(
        default=None, description="Geometric carry-over of the variable, its rate learned; null = the role's default."
    )
    center: bool | None = Field(
        default=None,
        description="Subtract the variable's training mean (its contribution is then relative to its average "
        "level); null = the role's default.",
    )
    prior_sigma: float | None = Field(
        default=None, gt=0, description="Prior scale of the effect; null = model.term_prior_sigma."
    )


class BetaPrior(_Strict):
    alpha: float = Field(default=1.0, gt=0)
    beta: float = Field(default=3.0, gt=0)


class CalendarEvent(_Strict):
    """A named event (holiday, promotion, launch): its dates become a 0/1 column ``event_<name>``."""

    dates: list[dt.date] = Field(min_length=1, description="Each occurrence; the week holding a date is flagged.")
    weeks_before: int = Field(default=0, ge=0, le=8, description="Also flag this many weeks before each date.")
    weeks_after: int = Field(default=0, ge=0, le=8, description="Also flag this many weeks after each date.")
    sign: Sign = Field(default="free", description="Sign of the event's effect.")


class RoiPrior(_Strict):
    """An analyst's belief about a channel's ROAS over the fitted window, in outcome per unit of the channel column."""

    mean: float = Field(gt=0, description="Believed ROAS (outcome units per currency unit, or per activity unit).")
    sd: float = Field(gt=0, description="Uncertainty of that belief (a standard deviation, same units).")


class ScalingConfig(_Strict):
    """Fixed scales, so one more week of data does not change what the model's parameters mean."""

    target: float | None = Field(default=None, gt=0, description="Target scale (outcome units); null = its maximum.")
    channels: dict[str, float] | None = Field(
        default=None, description="Scale of every channel (column units); null = each channel's maximum."
    )
    controls: dict[str, float] = Field(
        default_factory=dict,
        description="Scale of non-media variables (column units); the ones not listed use their largest absolute "
        "(centred) value.",
    )

    @model_validator(mode="after")
    def _positive(self) -> ScalingConfig:
        for group, values in (("channels", self.channels or {}), ("controls", self.controls)):
            bad = {name: value for name, value in values.items() if not value > 0}
            if bad:
                raise ValueError(f"{group} scales must be > 0, got {bad}")
        return self


class LiftTestsConfig(_Strict):
    """Where the lift-test (experiment) results are: a CSV file, see :mod:`mmm_assets.core.calibration`."""

    file: str = Field(min_length=1, description="File name of the CSV inside the folder.")
    folder: Path | None = Field(
        default=None, description="Folder holding the file; null = data.files.landing_dir (required for synthetic)."
    )
    method: Literal["exact", "library"] = Field(
        default="exact",
        description="exact: the model's counterfactual lift of each experiment, carry-over included; library: "
        "PyMC-Marketing's steady-state saturation-curve lift (see mmm_assets/core/calibration.py).",
    )

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if Path(value).name != value or value in {".", ".."}:
            raise ValueError(f"file {value!r} must be a plain file name inside the folder, not a path")
        return value


class ModelConfig(_Strict):
    adstock_l_max: int = Field(ge=1, le=52, description="Longest carry-over of the geometric adstock, in weeks.")
    yearly_seasonality: int | None = Field(default=None, ge=1, le=10, description="Fourier order, or null for none.")
    trend: bool = Field(default=False, description="Add a linear trend (per year, free sign unless terms.trend says).")
    terms: dict[str, TermSettings] = Field(
        default_factory=dict,
        description="Per non-media variable (competitor, control, 'event_<name>', 'trend'): sign, carry-over, "
        "centring, prior scale; unlisted variables take their role's defaults.",
    )
    term_prior_sigma: float = Field(
        default=1.0,
        gt=0,
        description="Prior scale of a non-media effect, in target-scale units per the variable's own scale.",
    )
    term_adstock_prior: BetaPrior = Field(
        default_factory=BetaPrior, description="Beta prior of the learned carry-over rate of non-media variables."
    )
    calendar: dict[str, CalendarEvent] = Field(default_factory=dict, description="Named events and their dates.")
    roi_priors: dict[str, RoiPrior] = Field(
        default_factory=dict, description="Prior belief about a channel's ROAS, per channel (optional)."
    )
    scaling: ScalingConfig | None = Field(default=None, description="Fixed scales; null = scale by the data's maxima.")
    lift_tests: LiftTestsConfig | None = Field(default=None, description="Lift-test results to calibrate with.")

    @field_validator("calendar")
    @classmethod
    def _event_names(cls, value: dict[str, CalendarEvent]) -> dict[str, CalendarEvent]:
        for name in value:
            _check_identifier(name, "calendar event")
            _check_identifier(EVENT_PREFIX + name, "calendar event column")
        return value


class SamplerConfig(_Strict):
    name: Literal["nutpie", "pymc", "numpyro"] = "numpyro"
    chains: int = Field(ge=1, le=16)
    draws: int = Field(ge=10)
    tune: int = Field(ge=10)
    target_accept: float = Field(gt=0.5, lt=1)
    seed: int = Field(ge=0)
    max_draws: int | None = Field(
        default=None,
        ge=10,
        description="When a fit's smallest bulk or tail ESS falls short of the ESS gates (or its R-hat is above the "
        "R-hat gate), sample again with the draws that should reach them, at most this many per chain; null = never.",
    )
    warm_start: bool = Field(
        default=True,
        description="numpyro only: start the chains at the champion's posterior draws, with its covariance as a fixed "
        "dense mass matrix and warm_tune tuning steps; a fit that then misses the gates samples more warm chains, "
        "or again cold.",
    )
    warm_tune: int = Field(default=100, ge=10, description="Tuning steps (step size only) of a warm-started fit.")
    cold_start: Literal["laplace", "adapt"] = Field(
        default="laplace",
        description="numpyro, fits that are not warm-started: laplace = start from the Laplace approximation at the "
        "posterior's mode (mmm_assets.core.laplace): the chains at its draws, its covariance as a fixed dense mass "
        "matrix, warm_tune tuning steps, and like a warm fit more chains or again cold (adapt) when it misses a gate; "
        "adapt = tune steps adapting the mass matrix (dense_mass), also when no mode is found.",
    )
    dense_mass: bool = Field(
        default=True,
        description="numpyro, fits that adapt their mass matrix: a dense one, regularised towards its own diagonal "
        "(mmm_assets.core.adaptation) instead of numpyro's diagonal one. Not for the pooled (hierarchical) model, "
        "where it diverged.",
    )
    cold_name: Literal["nutpie", "pymc", "numpyro"] | None = Field(
        default=None,
        description="The backend of every fit that is not warm-started (the first fit, holdout refits, cross-"
        "validation folds, the pooled model, a warm fit's cold fallback); null = name. E.g. nutpie, for brands too "
        "big for a cold numpyro fit, with numpyro's warm refreshes after it.",
    )

    @property
    def cold(self) -> str:
        """The backend of a fit that is not warm-started."""
        return self.cold_name or self.name

    @model_validator(mode="after")
    def _ceiling(self) -> SamplerConfig:
        if self.max_draws is not None and self.max_draws < self.draws:
            raise ValueError(f"sampler.max_draws ({self.max_draws}) must be at least sampler.draws ({self.draws})")
        return self


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
    duckdb: Path
    models_dir: Path
    reports_dir: Path = Path("data/reports")
    alerts_log: Path = Path("data/alerts.jsonl")
    mlflow_dir: Path = Path("mlruns")


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


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
    data: dict[str, dict] = Field(
        default_factory=dict,
        description="Per market, settings laid over the scenario's `data` section (e.g. another seed or truth).",
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
        return self


class MMMConfig(_Strict):
    """One scenario: data, model, sampler, gates and paths."""

    scenario: Name
    data: DataConfig
    model: ModelConfig
    sampler: SamplerConfig
    validation: ValidationConfig
    decisions: DecisionsConfig = Field(default_factory=DecisionsConfig)
    operations: OperationsConfig = Field(default_factory=OperationsConfig)
    stability: StabilityConfig = Field(default_factory=StabilityConfig)
    paths: PathsConfig
    markets: MarketsConfig | None = None
    _market: str | None = PrivateAttr(default=None)

    @property
    def market(self) -> str | None:
        """The market this configuration was narrowed to by :meth:`for_market`; None before that."""
        return self._market

    @property
    def market_names(self) -> list[str] | None:
        """The scenario's markets; None when they come from the landing file's market column."""
        if self.markets is None or not self.markets.names:
            files = self.data.files
            return None if files is not None and files.market_column else [DEFAULT_MARKET]
        return list(self.markets.names)

    @property
    def pooled(self) -> bool:
        return self.markets is not None and self.markets.pooling == "pooled"

    def for_market(self, market: str) -> MMMConfig:
        """This scenario narrowed to one market: its own `data` (the scenario's with the market's settings over it)."""
        names = self.market_names
        if names is not None and market not in names:
            raise ConfigError(f"scenario {self.scenario!r} has no market {market!r}; its markets are {names}")
        overrides = (self.markets.data.get(market) if self.markets else None) or {}
        try:
            data = DataConfig.model_validate(merged(self.data.model_dump(), overrides)) if overrides else self.data
        except ValidationError as err:
            raise ConfigError(f"markets.data.{market} is not valid:\n{_format_errors(err)}") from None
        narrowed = self.model_copy(update={"data": data})
        narrowed._market = market
        return narrowed

    @property
    def channels(self) -> list[str]:
        if self.data.source == "synthetic":
            assert self.data.synthetic is not None
            return list(self.data.synthetic.channels)
        assert self.data.files is not None
        return list(self.data.files.columns.channels)

    @property
    def owned_channels(self) -> list[str]:
        """Owned media (email, organic): modelled like paid media, but their columns are not money."""
        if self.data.source == "synthetic":
            assert self.data.synthetic is not None
            return [name for name, c in self.data.synthetic.channels.items() if c.role == "owned"]
        assert self.data.files is not None
        return [name for name in self.data.files.columns.channels if name in self.data.files.columns.owned]

    @property
    def paid_channels(self) -> list[str]:
        """Media bought with money: the channels budgets, ROAS in currency and reallocation apply to."""
        owned = set(self.owned_channels)
        return [name for name in self.channels if name not in owned]

    @property
    def competitors(self) -> list[str]:
        """Competitor activity columns: carried over, not saturated, negative effect."""
        if self.data.source == "synthetic":
            assert self.data.synthetic is not None
            return list(self.data.synthetic.competitors)
        assert self.data.files is not None
        return [name for name in self.data.files.columns.controls if name in self.data.files.columns.competitors]

    @property
    def event_columns(self) -> list[str]:
        """The 0/1 feature columns of the calendar events (added by :func:`mmm_assets.core.roles.with_calendar`)."""
        return [EVENT_PREFIX + name for name in self.model.calendar]

    @property
    def controls(self) -> list[str]:
        """Every non-media column of the feature frame the model reads: competitors, controls, calendar events."""
        if self.data.source == "files":
            assert self.data.files is not None
            data = list(self.data.files.columns.controls)
        else:
            assert self.data.synthetic is not None
            data = [*self.data.synthetic.competitors, *self.data.synthetic.controls]
        return [*data, *self.event_columns]

    @property
    def term_roles(self) -> dict[str, str]:
        """Role of every non-media term of the model: competitor, control, event or trend."""
        competitors, events = set(self.competitors), set(self.event_columns)
        roles = {
            name: "competitor" if name in competitors else "event" if name in events else "control"
            for name in self.controls
        }
        return roles | ({TREND_TERM: "trend"} if self.model.trend else {})

    @model_validator(mode="after")
    def _model_names_known(self) -> MMMConfig:
        """The model section may only name variables the data section provides."""
        m, channels, roles = self.model, self.channels, self.term_roles
        media_and_data = [*channels, *(c for c in self.controls if c not in self.event_columns)]
        clash = sorted(set(media_and_data) & {*self.event_columns, *([TREND_TERM] if m.trend else [])})
        if clash:
            raise ValueError(
                f"{clash} is both a data column and a name the model derives (calendar event column or the trend); "
                "rename the event or the column"
            )
        unknown = sorted(set(m.terms) - set(roles))
        if unknown:
            raise ValueError(
                f"model.terms names {unknown}, which are not non-media variables of this scenario "
                f"(known: {sorted(roles)})"
            )
        for name, settings in m.terms.items():
            if roles[name] == "competitor" and settings.sign not in (None, "negative"):
                raise ValueError(f"model.terms.{name}.sign: {name!r} is competitor activity, its effect is negative")
            if roles[name] == "trend" and (settings.adstock or settings.center):
                raise ValueError(f"model.terms.{name}: the trend takes no carry-over or centring (only sign, prior)")
        unknown = sorted(set(m.roi_priors) - set(channels))
        if unknown:
            raise ValueError(f"model.roi_priors names {unknown}, which are not channels (channels: {channels})")
        if m.scaling is not None and m.scaling.channels is not None and set(m.scaling.channels) != set(channels):
            raise ValueError(
                f"model.scaling.channels must give a scale for every channel {channels} (got "
                f"{sorted(m.scaling.channels)}); or set it to null to scale by the data"
            )
        unknown = sorted(set(m.scaling.controls if m.scaling else ()) - set(self.controls))
        if unknown:
            raise ValueError(f"model.scaling.controls names {unknown}, which are not controls ({self.controls})")
        synthetic = self.data.synthetic if self.data.source == "synthetic" else None
        unknown = sorted(set(synthetic.events if synthetic else ()) - set(m.calendar))
        if unknown:
            raise ValueError(f"data.synthetic.events names {unknown}, which are not events of model.calendar")
        if synthetic is not None and all(c.role == "owned" for c in synthetic.channels.values()):
            raise ValueError("every synthetic channel is owned; at least one paid (money) channel is needed")
        if m.lift_tests is not None and m.lift_tests.folder is None and self.data.files is None:
            raise ValueError("model.lift_tests.folder is needed when there is no data.files.landing_dir")
        if m.lift_tests is not None and m.lift_tests.folder is None and self.data.files and not self.data.files.file:
            raise ValueError(
                "model.lift_tests is in the landing folder, where data.files.file: null reads the newest CSV as the "
                "weekly data; name the data file in data.files.file or put the experiments in model.lift_tests.folder"
            )
        return self

    @model_validator(mode="after")
    def _enough_weeks(self) -> MMMConfig:
        if self.validation.holdout_weeks and self.validation.holdout_weeks >= self.validation.min_weeks:
            raise ValueError(
                f"validation.holdout_weeks ({self.validation.holdout_weeks}) must be smaller than "
                f"validation.min_weeks ({self.validation.min_weeks})"
            )
        if self.markets is not None and self.markets.data and self.data.files is not None:
            raise ValueError("markets.data overrides are for synthetic scenarios; a landing file names its markets")
        if self.pooled and (self.market_names or []) == [DEFAULT_MARKET]:
            raise ValueError("markets.pooling is 'pooled' but there is only one market; list markets.names")
        for market in self.markets.data if self.markets else ():
            self.for_market(market)  # each market's own data section must be valid on its own
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
    lift = cfg.model.lift_tests
    if lift is not None and lift.folder is not None:
        update["model"] = cfg.model.model_copy(
            update={"lift_tests": lift.model_copy(update={"folder": absolute(lift.folder)})}
        )
    return cfg.model_copy(update=update)


class _TooDeep(yaml.composer.ComposerError):
    """A node nested deeper than :data:`MAX_YAML_DEPTH`; its ``problem_mark`` is where the limit is crossed."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error instead of "the last one wins",
    and that nesting deeper than :data:`MAX_YAML_DEPTH` is an error instead of a stack overflow."""

    def __init__(self, stream: object) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        """PyYAML's composer recurses once per level: count the levels and stop before Python's stack runs out."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep(problem=f"nested more than {MAX_YAML_DEPTH} levels deep",
                               problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

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
    except _TooDeep as err:
        mark = err.problem_mark
        raise ConfigError(
            f"{file}: line {mark.line + 1}, column {mark.column + 1}: the settings are nested more than "
            f"{MAX_YAML_DEPTH} levels deep (a scenario needs fewer than 10); check the indentation and the brackets"
        ) from None
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
    try:
        return parse_config(_read_raw(file), source=str(file), root=project_root_for(file))
    except RecursionError:  # nesting built without deep indentation (aliases of aliases, long `extends` chains)
        raise ConfigError(
            f"{file}: nested too deeply to read (Python's recursion limit was reached); keep the settings within "
            f"{MAX_YAML_DEPTH} levels, without aliases (*name) nested into each other or a long chain of 'extends'"
        ) from None
