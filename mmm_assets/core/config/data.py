"""The ``data`` section: the synthetic generator's settings or the landing files and how their columns map to
the model's names."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from mmm_assets.core.config.base import _check_identifier, _Strict
from mmm_assets.core.config.media import (
    ADSTOCK_PARAMETERS,
    SATURATION_CEILING,
    SATURATION_PARAMETERS,
    AdstockSettings,
    SaturationSettings,
    missing_parameters,
)

#: Largest absolute value a landing file may hold by default: above it a number is a units or export mistake.
DEFAULT_MAX_ABS_VALUE = 1e12
#: Largest landing file read by default, in MB (MiB). A weekly export is small: 500 markets x 10 years of weeks x 40
#: columns of 10-character numbers is ~110 MB, so 200 MB leaves room above the largest plausible file, while a
#: runaway export (every campaign, every day) is stopped before it is read. Reading a 200 MB CSV takes at most
#: ~450 MiB above the imports, when every column is mapped, ~110 MiB when most are not (benchmarks/ingest_memory.py;
#: the whole-file reader it replaced took 2.1-2.6 GiB).
DEFAULT_MAX_FILE_MB = 200.0

class SyntheticChannel(_Strict):
    """Ground truth of one synthetic media channel: spend range, role and the true response parameters."""

    role: Literal["paid", "owned"] = Field(
        default="paid",
        description="paid: bought media with money spend (budgets may move it); owned: e.g. email or organic "
        "posts, whose column is activity volume, not money. Both get adstock + saturation and a positive effect.",
    )
    spend_min: float = Field(ge=0)
    spend_max: float = Field(gt=0)
    beta: float = Field(
        gt=0, description="Channel effect, in outcome-scale units at saturation (the saturation family's ceiling)."
    )
    saturation_lam: float | None = Field(
        default=None, gt=0, description="Logistic saturation rate on max-scaled spend (logistic: lam)."
    )
    adstock_alpha: float | None = Field(
        default=None, ge=0, lt=1, description="Geometric adstock retention rate (geometric: alpha)."
    )
    saturation: dict[str, float] = Field(
        default_factory=dict,
        description="The true parameters of data.synthetic.saturation's family but its ceiling (beta), named as "
        "PyMC-Marketing names them, on max-scaled spend, e.g. hill: {slope: 2, kappa: 0.4}.",
    )
    adstock: dict[str, float] = Field(
        default_factory=dict,
        description="The true parameters of data.synthetic.adstock's family, named as PyMC-Marketing names them, "
        "e.g. weibull_cdf: {lam: 3, k: 1.5}.",
    )
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
    """A generator with known ground truth (see :mod:`mmm_assets.core.synthetic.generator`)."""

    start_date: dt.date
    end_date: dt.date
    channels: dict[str, SyntheticChannel] = Field(min_length=1)
    intercept: float = Field(ge=0)
    outcome_scale: float = Field(gt=0)
    noise_sigma: float = Field(ge=0, description="Noise standard deviation, in outcome-scale units.")
    adstock_l_max: int = Field(ge=1, le=52)
    adstock: AdstockSettings = Field(
        default_factory=AdstockSettings, description="The true carry-over family (its l_max: adstock_l_max)."
    )
    saturation: SaturationSettings = Field(
        default_factory=SaturationSettings, description="The true diminishing-returns family."
    )
    adstock_first: bool = Field(default=True, description="True carry-over before saturation.")
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
        for name, channel in self.channels.items():
            ceiling = SATURATION_CEILING[self.saturation.family]
            if ceiling in channel.saturation:
                raise ValueError(f"channels.{name}.saturation.{ceiling}: give the effect at saturation as beta")
            if channel.saturation_lam is not None and self.saturation.family != "logistic":
                raise ValueError(f"channels.{name}.saturation_lam is logistic's; give saturation: {{...}} instead")
            if channel.adstock_alpha is not None and "alpha" not in ADSTOCK_PARAMETERS[self.adstock.family]:
                raise ValueError(f"channels.{name}.adstock_alpha is not a {self.adstock.family} parameter")
            for kind, family, given, table in (
                ("adstock", self.adstock.family, self.adstock_parameters(name), ADSTOCK_PARAMETERS),
                ("saturation", self.saturation.family, self.saturation_parameters(name), SATURATION_PARAMETERS),
            ):
                wrong = missing_parameters(family, given, table)
                if wrong:
                    raise ValueError(f"channels.{name}.{kind}: {wrong}")
        if self.adstock.l_max is not None and self.adstock.l_max != self.adstock_l_max:
            raise ValueError(f"adstock.l_max ({self.adstock.l_max}) differs from adstock_l_max ({self.adstock_l_max})")
        names = [*self.channels, *self.competitors, *self.controls]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{repeated} named more than once across channels, competitors and controls")
        return self


    def adstock_parameters(self, channel: str) -> dict[str, float]:
        """A channel's true adstock parameters, named as PyMC-Marketing names them (``adstock_alpha`` is
        geometric's and delayed's ``alpha``)."""
        c = self.channels[channel]
        alpha = {"alpha": c.adstock_alpha} if c.adstock_alpha is not None and "alpha" in ADSTOCK_PARAMETERS[
            self.adstock.family] else {}
        return {**alpha, **c.adstock}

    def saturation_parameters(self, channel: str) -> dict[str, float]:
        """A channel's true saturation parameters, named as PyMC-Marketing names them, the ceiling from ``beta``
        (outcome-scale units) and logistic's ``lam`` from ``saturation_lam``."""
        c, family = self.channels[channel], self.saturation.family
        lam = {"lam": c.saturation_lam} if c.saturation_lam is not None and family == "logistic" else {}
        return {**lam, **c.saturation, SATURATION_CEILING[family]: c.beta}


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
    """Where the weekly data come from: the synthetic generator or a landing folder of files."""
    source: Literal["synthetic", "files"]
    synthetic: SyntheticSource | None = None
    files: FilesSource | None = None

    @model_validator(mode="after")
    def _chosen_present(self) -> DataConfig:
        if getattr(self, self.source) is None:
            raise ValueError(f"data.source is {self.source!r} but there is no data.{self.source} section")
        return self
