"""One scenario (:class:`MMMConfig`): every section together, with the checks that span sections."""

from __future__ import annotations

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from mmm_assets.core.config.base import (
    DEFAULT_MARKET,
    EVENT_PREFIX,
    TREND_TERM,
    ConfigError,
    Name,
    _format_errors,
    _Strict,
    merged,
)
from mmm_assets.core.config.data import DataConfig
from mmm_assets.core.config.decisions import DecisionsConfig
from mmm_assets.core.config.kpi import KpiConfig
from mmm_assets.core.config.model import ModelConfig, SamplerConfig
from mmm_assets.core.config.operations import MarketsConfig, OperationsConfig, PathsConfig
from mmm_assets.core.config.validation import (
    PROFILE_STABILITY,
    PROFILE_TARGET_ACCEPT,
    PROFILE_THRESHOLDS,
    StabilityConfig,
    ValidationConfig,
    resolve_thresholds,
)


class MMMConfig(_Strict):
    """One scenario: data, model, sampler, gates and paths."""

    scenario: Name
    data: DataConfig
    model: ModelConfig
    sampler: SamplerConfig
    validation: ValidationConfig
    kpi: KpiConfig = Field(default_factory=KpiConfig)
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
        """Whether the markets share one hierarchical model (markets.pooling: pooled)."""
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

    def with_candidate(self, name: str | None) -> MMMConfig:
        """This scenario fitting candidate specification ``name`` of ``model.candidates`` (None: as it is)."""
        if name is None:
            return self
        chosen = self.model_copy(update={"model": self.model.candidate(name)})
        chosen._market = self._market
        return chosen

    @property
    def channels(self) -> list[str]:
        """The media channels' canonical names, in the scenario's order."""
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
        """The 0/1 feature columns of the calendar events (added by
        :func:`mmm_assets.core.data.calendar.with_calendar`)."""
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

    @model_validator(mode="before")
    @classmethod
    def _validation_profile(cls, raw: object) -> object:
        """Resolve `validation.profile` (synthetic data: synthetic; files: real) and lay the scenario's own thresholds
        over the profile's, so the rest of the code reads one complete set (their values are validated after); an unset
        `sampler.target_accept` takes the profile's, and so do the `stability` bounds a scenario leaves unset."""
        if not isinstance(raw, dict):
            return raw
        validation, data = raw.get("validation"), raw.get("data")
        if isinstance(validation, ValidationConfig):
            validation = validation.model_dump(exclude_unset=True)
        if not isinstance(validation, dict) or not isinstance(validation.get("thresholds", {}), dict):
            return raw
        source = data.get("source") if isinstance(data, dict) else getattr(data, "source", None)
        profile = validation.get("profile") or ("real" if source == "files" else "synthetic")
        if profile not in PROFILE_THRESHOLDS:
            return raw  # the field's own validation names the allowed profiles
        thresholds = resolve_thresholds(profile, validation.get("thresholds", {}))
        resolved = {**raw, "validation": {**validation, "profile": profile, "thresholds": thresholds}}
        sampler = raw.get("sampler")
        if isinstance(sampler, dict) and sampler.get("target_accept") is None:
            resolved["sampler"] = {**sampler, "target_accept": PROFILE_TARGET_ACCEPT[profile]}
        stability = raw.get("stability") or {}
        if isinstance(stability, StabilityConfig):
            stability = stability.model_dump(exclude_unset=True)
        if isinstance(stability, dict):  # the profile's stability bounds under the scenario's own
            resolved["stability"] = {**PROFILE_STABILITY[profile], **stability}
        return resolved

    @model_validator(mode="after")
    def _model_names_known(self) -> MMMConfig:  # noqa: C901 -- a flat list of independent checks, one `if` each
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
        self._scales_known()
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

    def _scales_known(self) -> None:
        """``model.scaling`` (and each market's entry) names every channel or none, only controls, only markets."""
        scaling, channels = self.model.scaling, self.channels
        if scaling is None:
            return
        names = self.market_names
        unknown = sorted(set(scaling.markets) - set(names)) if names is not None else []
        if unknown:
            raise ValueError(f"model.scaling.markets names {unknown}, which are not markets of the scenario ({names})")
        for where, scales in (("model.scaling", scaling), *((f"model.scaling.markets.{market}", scales)
                                                              for market, scales in scaling.markets.items())):
            if scales.channels is not None and set(scales.channels) != set(channels):
                raise ValueError(
                    f"{where}.channels must give a scale for every channel {channels} (got "
                    f"{sorted(scales.channels)}); or set it to null to scale by the data"
                )
            unknown = sorted(set(scales.controls) - set(self.controls))
            if unknown:
                raise ValueError(f"{where}.controls names {unknown}, which are not controls ({self.controls})")

    @model_validator(mode="after")
    def _enough_weeks(self) -> MMMConfig:
        if self.validation.holdout_weeks and self.validation.holdout_weeks >= self.validation.min_weeks:
            raise ValueError(
                f"validation.holdout_weeks ({self.validation.holdout_weeks}) must be smaller than "
                f"validation.min_weeks ({self.validation.min_weeks})"
            )
        if self.markets is not None and self.markets.data and self.data.files is not None:
            raise ValueError("markets.data overrides are for synthetic scenarios; a landing file names its markets")
        for name in self.model.candidates:
            self.model.candidate(name)  # each must be a valid model section on its own
        if self.pooled and self.model.candidates:
            raise ValueError("model.candidates are compared one market at a time; the pooled model fits every market")
        families = (self.model.adstock.family, self.model.saturation.family)
        if self.pooled and families != ("geometric", "logistic"):
            raise ValueError(
                f"markets.pooling: pooled fits geometric adstock and logistic saturation only (its hierarchical priors "
                f"are theirs), not {families[0]} + {families[1]}; fit the markets separately or use the default families"
            )
        if self.pooled and self.model.time_varying_intercept:
            raise ValueError("markets.pooling: pooled has a constant intercept per market, not model.time_varying_intercept")
        if self.pooled and (self.market_names or []) == [DEFAULT_MARKET]:
            raise ValueError("markets.pooling is 'pooled' but there is only one market; list markets.names")
        for market in self.markets.data if self.markets else ():
            self.for_market(market)  # each market's own data section must be valid on its own
        return self
