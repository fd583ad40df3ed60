"""The ``model`` and ``sampler`` sections: terms, priors, scaling, lift tests, calendar events and NUTS settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mmm_assets.core.config.base import EVENT_PREFIX, Sign, _check_identifier, _Strict, merged
from mmm_assets.core.config.media import AdstockSettings, SaturationSettings


class TermSettings(_Strict):
    """How one non-media variable (competitor, control, calendar event, trend) enters the model.

    Unset fields take the role's default (see :mod:`mmm_assets.core.modelling.roles`): competitors are negative, carried
    over and not centred; controls free, not carried over and centred; events and the trend free, neither.
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
    """A Beta prior's two shape parameters."""
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


class MediaPrior(_Strict):
    """The prior on each channel's effect at saturation (the saturation family's ceiling: ``beta`` of logistic and
    hill, ``alpha`` of michaelis_menten, ``b`` of tanh; ``SATURATION_CEILING``).

    spend_share: HalfNormal, scaled so the channels' expected effects at saturation add up to ``media_share`` of the
    mean KPI, split by each paid channel's share of the spend (owned channels an equal share): media modest unless
    the data say otherwise (PyMC-Marketing's spend-share prior; Meridian's default ROI prior plays the same part).
    library: PyMC-Marketing's HalfNormal(2) in target-scale units per channel, which lets weak data give media most
    of the KPI. How the default was chosen: README "Validating on real data"."""

    kind: Literal["spend_share", "library"] = Field(default="spend_share", description="spend_share | library.")
    media_share: float = Field(
        default=0.3, gt=0, le=1, description="spend_share: the media's expected share of the mean KPI at saturation."
    )
    shared_scale_sd: float | None = Field(
        default=None, ge=0.05, le=2.0,
        description=(
            "spend_share: every channel's effect is scaled by one factor shared by the channels, log-normal with "
            "this sd (mean 1; 0.6 measured), so how much of the KPI the media make stays as uncertain with 30 "
            "channels as with 3; null = independent channels, whose total the prior pins down more tightly the more "
            "channels there are (README \"Many channels\")."
        ),
    )


class MarketScales(_Strict):
    """Fixed scales of one model: the target's, every channel's, some controls'."""

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


class ScalingConfig(MarketScales):
    """Fixed scales, so one more week of data does not change what the model's parameters mean; per market, where
    markets differ in size (a pooled model's markets must each be on their own scale for their parameters to be
    comparable: README "Markets")."""

    markets: dict[str, MarketScales] = Field(
        default_factory=dict,
        description="Per market, scales over the ones above for that market (its target, all its channels, some of "
        "its controls); a market not listed takes the ones above.",
    )

    def of_market(self, market: str | None) -> MarketScales:
        """The scales of ``market``: its own entry over the scenario's (controls merged name by name)."""
        own = self.markets.get(market) if market is not None else None
        if own is None:
            return MarketScales(target=self.target, channels=self.channels, controls=self.controls)
        return MarketScales(
            target=own.target if own.target is not None else self.target,
            channels=own.channels if own.channels is not None else self.channels,
            controls={**self.controls, **own.controls},
        )


class LiftTestsConfig(_Strict):
    """Where the lift-test (experiment) results are: a CSV file, see :mod:`mmm_assets.core.modelling.calibration`."""

    file: str = Field(min_length=1, description="File name of the CSV inside the folder.")
    folder: Path | None = Field(
        default=None, description="Folder holding the file; null = data.files.landing_dir (required for synthetic)."
    )
    method: Literal["exact", "library"] = Field(
        default="exact",
        description="exact: the model's counterfactual lift of each experiment, carry-over included; library: "
        "PyMC-Marketing's steady-state saturation-curve lift (see mmm_assets/core/modelling/calibration.py).",
    )

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if Path(value).name != value or value in {".", ".."}:
            raise ValueError(f"file {value!r} must be a plain file name inside the folder, not a path")
        return value


class ModelConfig(_Strict):
    """The model's structure: transforms, terms, priors, scaling, lift tests, calendar events."""
    adstock_l_max: int = Field(
        ge=1, le=52, description="Longest carry-over of the media's adstock (and of carried-over terms), in weeks."
    )
    adstock: AdstockSettings = Field(
        default_factory=AdstockSettings, description="The media's carry-over family (model.adstock.family)."
    )
    saturation: SaturationSettings = Field(
        default_factory=SaturationSettings, description="The media's diminishing-returns family."
    )
    adstock_first: bool = Field(
        default=True, description="Carry-over before saturation (true) or saturation of each week's spend first."
    )
    time_varying_intercept: bool = Field(
        default=False,
        description="A baseline that drifts over time (PyMC-Marketing's Hilbert-space Gaussian process on the "
        "intercept) instead of a constant one.",
    )
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
    media_prior: MediaPrior = Field(
        default_factory=MediaPrior, description="Prior on the channels' effects (spend_share | library)."
    )
    roi_priors: dict[str, RoiPrior] = Field(
        default_factory=dict, description="Prior belief about a channel's ROAS, per channel (optional)."
    )
    scaling: ScalingConfig | None = Field(default=None, description="Fixed scales; null = scale by the data's maxima.")
    lift_tests: LiftTestsConfig | None = Field(default=None, description="Lift-test results to calibrate with.")
    candidates: dict[str, dict] = Field(
        default_factory=dict,
        description="Specifications to compare, by name: model settings laid over this section's (e.g. "
        "{weibull_hill: {adstock: {family: weibull_cdf}, saturation: {family: hill}}}; {} is this section as it is). "
        "The model_comparison asset fits each and model.select picks the one the rest of the graph uses.",
    )
    select: Literal["elpd"] = Field(
        default="elpd",
        description="elpd: the best PSIS-LOO ELPD among the candidates that pass every gate; one within 2 standard "
        "errors of the difference with fewer parameters wins the tie.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_l_max(cls, raw: object) -> object:
        """``adstock_l_max`` and ``adstock.l_max`` are one setting: either may be given, both only if they agree."""
        if not isinstance(raw, dict):
            return raw
        adstock = raw.get("adstock") or {}
        if isinstance(adstock, AdstockSettings):
            adstock = adstock.model_dump()
        if not isinstance(adstock, dict):
            return raw
        top, inner = raw.get("adstock_l_max"), adstock.get("l_max")
        if top is not None and inner is not None and top != inner:
            raise ValueError(f"model.adstock_l_max ({top}) and model.adstock.l_max ({inner}) disagree; give one")
        l_max = top if top is not None else inner
        if l_max is None:
            return raw  # the field's own validation says it is required
        return {**raw, "adstock_l_max": l_max, "adstock": {**adstock, "l_max": l_max}}

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: dict[str, dict]) -> dict[str, dict]:
        if len(value) == 1:
            raise ValueError("model.candidates needs at least two specifications to compare (or none)")
        for name, overrides in value.items():
            _check_identifier(name, "candidate")
            if not isinstance(overrides, dict):
                raise ValueError(f"model.candidates.{name} must be a mapping of model settings, got {overrides!r}")
            nested = sorted({"candidates", "select"} & set(overrides))
            if nested:
                raise ValueError(f"model.candidates.{name} sets {nested}, which belong to model itself")
        return value

    def candidate(self, name: str) -> ModelConfig:
        """This section with candidate ``name``'s settings laid over it (and no candidates of its own)."""
        raw = merged(self.model_dump(exclude={"candidates"}), self.candidates[name])
        try:
            return ModelConfig.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(f"model.candidates.{name}: {exc}") from None

    @field_validator("calendar")
    @classmethod
    def _event_names(cls, value: dict[str, CalendarEvent]) -> dict[str, CalendarEvent]:
        for name in value:
            _check_identifier(name, "calendar event")
            _check_identifier(EVENT_PREFIX + name, "calendar event column")
        return value


class SamplerConfig(_Strict):
    """How the posterior is sampled: backend, chains, draws, warm and Laplace starts, the ESS target."""
    name: Literal["nutpie", "pymc", "numpyro"] = "numpyro"
    chains: int = Field(ge=1, le=16)
    draws: int = Field(ge=10)
    tune: int = Field(ge=10)
    target_accept: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="NUTS target acceptance rate; null = the validation profile's (PROFILE_TARGET_ACCEPT).",
    )
    seed: int = Field(ge=0)
    max_draws: int | None = Field(
        default=None,
        ge=10,
        description="When a fit's smallest bulk or tail ESS falls short of the ESS gates (or its R-hat is above the "
        "R-hat gate), sample again with the draws that should reach them, at most this many per chain; null = never "
        "(a warm or Laplace start that misses is then kept too, not sampled again cold).",
    )
    warm_start: bool = Field(
        default=True,
        description="numpyro only: start the chains at the champion's posterior draws, with its covariance as a fixed "
        "dense mass matrix and warm_tune tuning steps; a fit that then misses the gates samples more warm chains, "
        "or again cold.",
    )
    warm_tune: int = Field(default=100, ge=10, description="Tuning steps (step size only) of a warm-started fit.")
    laplace_longer_from: int | None = Field(
        default=600,
        ge=1,
        description="A fit started from the Laplace approximation with at least this many unconstrained parameters "
        "samples max_draws per chain at once and, short of a gate, again cold, instead of draws per chain and then more "
        "chains of that length; null = never. Measured (docs/performance.md, 'Pooled fits from the Laplace "
        "approximation'): 559 parameters (50 geos x 3 channels) passed with more chains; at 670 (20 geos x 10 "
        "channels) new pairs of 500-draw chains wandered into a slowly mixing tail and R-hat got worse with every "
        "pair, 2 x 1,000 draws still missed, 2 x 2,000 passed (and at 1,630 parameters 2 x 1,751).",
    )
    cold_start: Literal["laplace", "adapt"] = Field(
        default="laplace",
        description="numpyro, fits that are not warm-started: laplace = start from the Laplace approximation at the "
        "posterior's mode (mmm_assets.core.inference.laplace): the chains at its draws, its covariance as a fixed "
        "dense mass "
        "matrix, warm_tune tuning steps, and like a warm fit more chains or again cold (adapt) when it misses a gate; "
        "adapt = tune steps adapting the mass matrix (dense_mass), also when no mode is found.",
    )
    dense_mass: bool = Field(
        default=True,
        description="numpyro, fits that adapt their mass matrix: a dense one, regularised towards its own diagonal "
        "(mmm_assets.core.inference.adaptation) instead of numpyro's diagonal one. Not for the pooled (hierarchical) "
        "model, "
        "where it diverged.",
    )
    cold_name: Literal["nutpie", "pymc", "numpyro"] | None = Field(
        default=None,
        description="The backend of every fit that is not warm-started (the first fit, holdout refits, cross-"
        "validation folds, the pooled model); null = name. E.g. nutpie, for brands too big for a cold numpyro fit, "
        "with numpyro's warm refreshes after it.",
    )

    fallback_name: Literal["nutpie", "pymc", "numpyro"] | None = Field(
        default=None,
        description="The backend of the cold fit that replaces a warm or Laplace start when that start diverges, "
        "misses a gate with no room for more chains, or finds no mode; null = cold_name (or name).",
    )

    @property
    def cold(self) -> str:
        """The backend of a fit that is not warm-started."""
        return self.cold_name or self.name

    @property
    def fallback(self) -> str:
        """The backend of the cold fit that replaces a failed warm or Laplace start."""
        return self.fallback_name or self.cold

    @model_validator(mode="after")
    def _ceiling(self) -> SamplerConfig:
        if self.max_draws is not None and self.max_draws < self.draws:
            raise ValueError(f"sampler.max_draws ({self.max_draws}) must be at least sampler.draws ({self.draws})")
        return self
