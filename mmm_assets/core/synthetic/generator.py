"""Synthetic weekly spend and outcome with known ground truth.

The media follow the same transforms as the fitted model, PyMC-Marketing's own (``data.synthetic.adstock`` and
``data.synthetic.saturation`` name the families, geometric and logistic by default, evaluated by
:mod:`mmm_assets.core.transforms.media`), so the model's scale-free parameters can be compared with the truth
directly. With the default families::

    y_t = outcome_scale * (intercept + sum_c beta_c * logistic(adstock(spend_c / max(spend_c), alpha_c), lam_c) + e_t)
    logistic(x, lam) = (1 - exp(-lam x)) / (1 + exp(-lam x))
    adstock(x, alpha)_t = sum_{l < L} alpha^l x_{t-l} / sum_{l < L} alpha^l        (normalised geometric)
    e_t ~ Normal(0, noise_sigma)

``beta_c`` is the channel's effect at saturation whatever the family (hill's ``beta``, michaelis_menten's ``alpha``,
tanh's ``b``).

Every other role (see :mod:`mmm_assets.core.modelling.roles`) adds its own term, in outcome-scale units times
``outcome_scale``, with the same transforms the model uses, so its truth can be recovered:

    competitor k:  effect_k * adstock(a_k / max(a_k), alpha_k)               (effect_k < 0, no saturation)
    control j:     effect_j * (level_j + adstock(z_j - level_j, alpha_j))     (per unit of the control z_j)
    trend:         trend * years since the first week
    seasonality:   amplitude * cos(2 pi (day of year - peak_day) / 365.25)
    event e:       effect_e in each week model.calendar flags for e

Owned channels are simulated like paid ones. A channel that ``follows`` another copies its spend pattern with a
``follow_noise`` share of its own, so the two are nearly collinear. Existing scenarios draw the same numbers as
before: the extra roles use their own random stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmm_assets.core.config import (
    DATE_COLUMN,
    EVENT_PREFIX,
    SATURATION_CEILING,
    TARGET_COLUMN,
    TREND_TERM,
    CalendarEvent,
    ColumnMapping,
    MMMConfig,
    SyntheticSource,
)
from mmm_assets.core.data.calendar import event_indicators
from mmm_assets.core.data.features import SOURCE_ATTR

#: Weeks start on Mondays.
WEEK_FREQ = "W-MON"
#: Days per year, for the trend (per year) and the yearly cycle.
DAYS_PER_YEAR = 365.25
#: Seed-sequence key of the random stream of the non-media roles (kept apart from the channels' stream).
ROLES_STREAM = 1
#: Name of the true yearly-seasonality component.
SEASONALITY = "seasonality"
#: How a saturation parameter moves when spend is divided by another scale: its power of (scale / spend maximum);
#: a rate (logistic lam) moves with it, a position on the spend axis (hill kappa...) against it, others not at all.
SCALE_POWER = {("logistic", "lam"): 1, ("hill", "kappa"): -1, ("michaelis_menten", "lam"): -1, ("tanh", "c"): -1}


def geometric_adstock(x: np.ndarray, alpha: float, l_max: int) -> np.ndarray:
    """Normalised geometric carry-over over ``l_max`` weeks; weeks before the first count as zero spend (the
    non-media terms' carry-over; the media's is the configured family's)."""
    weights = alpha ** np.arange(l_max)
    weights = weights / weights.sum()
    return np.convolve(x, weights)[: len(x)]


@dataclass(frozen=True)
class GroundTruth:
    """True parameters of a synthetic scenario and the true weekly contribution of every channel."""

    #: one row per channel: beta (effect at saturation, outcome-scale units), spend_max, role, adstock_l_max and each
    #: family parameter under the model's variable name (adstock_alpha, saturation_lam, saturation_kappa...)
    parameters: pd.DataFrame
    intercept: float
    outcome_scale: float
    noise_sigma: float
    contributions: pd.DataFrame  # date + one column per channel, in outcome units
    #: One row per non-media term (index: the term's column name, or ``trend``): role, sign, ``effect_per_unit``
    #: (outcome units per unit of the column; per year for the trend; per flagged week for an event),
    #: ``adstock_alpha`` and ``scale_max`` (the column's largest value).
    terms: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: date + the true weekly contribution of every term and of the yearly cycle (``seasonality``), outcome units.
    components: pd.DataFrame = field(default_factory=pd.DataFrame)
    adstock_family: str = "geometric"
    saturation_family: str = "logistic"
    adstock_first: bool = True

    def parameters_on_scales(self, channel_scales: Mapping[str, float]) -> pd.DataFrame:
        """The true parameters as a model with these (fixed) channel scales should estimate them.

        The truth's saturation acts on spend / its maximum; a model dividing spend by ``s`` instead sees e.g.
        logistic ``lam * s / spend_max`` (``SCALE_POWER``). Adstock parameters do not depend on the scale. Channels
        not in ``channel_scales`` keep the truth's own (maximum) scale.
        """
        out = self.parameters.copy()
        for (family, name), power in SCALE_POWER.items():
            if family != self.saturation_family:
                continue
            for channel, scale in channel_scales.items():
                if channel in out.index:
                    out.loc[channel, f"saturation_{name}"] *= (scale / out.loc[channel, "spend_max"]) ** power
        return out

    def family_parameters(self, channel: str) -> tuple[dict[str, float], dict[str, float]]:
        """A channel's true adstock and saturation parameters by the library's names (ceiling: ``beta``)."""
        row = self.parameters.loc[channel]
        adstock = {k.removeprefix("adstock_"): float(v) for k, v in row.items() if k.startswith("adstock_")}
        adstock.pop("l_max")
        saturation = {k.removeprefix("saturation_"): float(v) for k, v in row.items() if k.startswith("saturation_")}
        return adstock, {**saturation, SATURATION_CEILING[self.saturation_family]: float(row["beta"])}

    def steady_response(self, channel: str, weekly_spend: np.ndarray) -> np.ndarray:
        """True weekly contribution (outcome units) of the same spend every week, at each level of ``weekly_spend``
        (a normalised adstock keeps a steady level)."""
        from mmm_assets.core.transforms.media import apply_saturation, saturation_transformation

        scaled = np.asarray(weekly_spend, dtype=float) / self.parameters.loc[channel, "spend_max"]
        _, saturation = self.family_parameters(channel)
        return self.outcome_scale * apply_saturation(saturation_transformation(self.saturation_family), scaled, saturation)[0]

    def channel_response(self, channel: str, spend: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """True weekly contribution (outcome units) of a spend series, optionally after earlier weeks' spend."""
        # deferred: the transforms import PyMC-Marketing, which the asset definitions importing GroundTruth do not need
        from mmm_assets.core.transforms.media import adstock_transformation, apply_media, saturation_transformation

        p = self.parameters.loc[channel]
        l_max = int(p["adstock_l_max"])
        past = np.zeros(l_max - 1) if history is None else np.asarray(history, dtype=float)[-(l_max - 1) :]
        full = np.concatenate([past, np.asarray(spend, dtype=float)]) / p["spend_max"]
        adstock, saturation = self.family_parameters(channel)
        effect = apply_media(
            adstock_transformation(self.adstock_family, l_max),
            saturation_transformation(self.saturation_family),
            self.adstock_first,
            full,
            adstock,
            saturation,
        )[0]
        return (self.outcome_scale * effect)[len(past) :]


def _spend_signal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A spend pattern in [0, 1]: a few campaign cycles of random period plus week-to-week noise."""
    t = np.arange(n)
    signal = rng.normal(0.0, 0.6, n)
    for _ in range(3):
        period = rng.uniform(6, 60)
        signal += rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    signal -= signal.min()
    return signal / signal.max()


def _channel_spend(source: SyntheticSource, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Spend per channel; a channel that follows another mixes that one's pattern with a share of its own."""
    patterns: dict[str, np.ndarray] = {}
    spend: dict[str, np.ndarray] = {}
    for name, channel in source.channels.items():
        pattern = _spend_signal(rng, n)
        if channel.follows is not None:
            pattern = (1 - channel.follow_noise) * patterns[channel.follows] + channel.follow_noise * pattern
            pattern = (pattern - pattern.min()) / (pattern.max() - pattern.min())
        patterns[name] = pattern
        spend[name] = np.round(channel.spend_min + (channel.spend_max - channel.spend_min) * pattern, 2)
    return spend


def _ar1(rng: np.random.Generator, n: int, persistence: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series with standard deviation ``sd``."""
    shocks = rng.normal(0.0, sd * np.sqrt(1 - persistence**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for t in range(1, n):
        out[t] = persistence * out[t - 1] + shocks[t]
    return out


def _terms(
    source: SyntheticSource, dates: pd.DatetimeIndex, calendar: Mapping[str, CalendarEvent] | None
) -> tuple[dict[str, np.ndarray], pd.DataFrame, pd.DataFrame]:
    """Columns, truth table and weekly contributions (outcome units) of the non-media roles."""
    rng = np.random.default_rng([source.seed, ROLES_STREAM])
    n, scale, l_max = len(dates), source.outcome_scale, source.adstock_l_max
    columns: dict[str, np.ndarray] = {}
    rows: list[dict] = []
    parts: dict[str, np.ndarray] = {}
    for name, c in source.competitors.items():
        activity = np.round(c.activity_min + (c.activity_max - c.activity_min) * _spend_signal(rng, n), 2)
        columns[name] = activity
        parts[name] = scale * c.effect * geometric_adstock(activity / activity.max(), c.adstock_alpha, l_max)
        rows.append({"term": name, "role": "competitor", "effect_per_unit": scale * c.effect / activity.max(),
                     "adstock_alpha": c.adstock_alpha, "scale_max": float(activity.max())})
    for name, c in source.controls.items():
        deviation = _ar1(rng, n, c.persistence, c.sd)
        columns[name] = np.round(c.level + deviation, 4)
        carried = c.level + geometric_adstock(columns[name] - c.level, c.adstock_alpha, l_max)
        parts[name] = scale * c.effect * carried
        rows.append({"term": name, "role": "control", "effect_per_unit": scale * c.effect,
                     "adstock_alpha": c.adstock_alpha, "scale_max": float(np.abs(columns[name]).max())})
    if source.events:
        missing = sorted(set(source.events) - set(calendar or {}))
        if missing:
            raise ValueError(
                f"data.synthetic.events names {missing}, which the calendar passed to generate() does not have "
                "(pass cfg.model.calendar)"
            )
        assert calendar is not None
        flags = event_indicators(dates, {name: calendar[name] for name in source.events})
        for name, effect in source.events.items():
            column = EVENT_PREFIX + name
            parts[column] = scale * effect * flags[column].to_numpy()
            rows.append({"term": column, "role": "event", "effect_per_unit": scale * effect,
                         "adstock_alpha": 0.0, "scale_max": 1.0})
    years = ((dates - dates[0]).days / DAYS_PER_YEAR).to_numpy()
    if source.trend:
        parts[TREND_TERM] = scale * source.trend * years
        rows.append({"term": TREND_TERM, "role": "trend", "effect_per_unit": scale * source.trend,
                     "adstock_alpha": 0.0, "scale_max": float(years.max())})
    if source.seasonality is not None:
        phase = 2 * np.pi * (dates.dayofyear.to_numpy() - source.seasonality.peak_day) / DAYS_PER_YEAR
        parts[SEASONALITY] = scale * source.seasonality.amplitude * np.cos(phase)
    terms = pd.DataFrame(rows, columns=["term", "role", "effect_per_unit", "adstock_alpha", "scale_max"])
    terms["sign"] = np.where(terms["effect_per_unit"] > 0, "positive", "negative")
    components = pd.DataFrame({DATE_COLUMN: dates, **parts})
    return columns, terms.set_index("term"), components


def generate(
    source: SyntheticSource, calendar: Mapping[str, CalendarEvent] | None = None
) -> tuple[pd.DataFrame, GroundTruth]:
    """Weekly spend per channel, the other roles' columns and the outcome ``y``, plus the truth that made them.

    ``calendar`` (``cfg.model.calendar``) places the events ``source.events`` gives effects for.
    """
    rng = np.random.default_rng(source.seed)
    dates = pd.date_range(source.start_date, source.end_date, freq=WEEK_FREQ)
    n = len(dates)
    frame = pd.DataFrame({DATE_COLUMN: dates})
    contributions = pd.DataFrame({DATE_COLUMN: dates})
    rows = []
    ceiling = SATURATION_CEILING[source.saturation.family]
    for name, spend in _channel_spend(source, rng, n).items():
        channel = source.channels[name]
        frame[name] = spend
        saturation = source.saturation_parameters(name)
        rows.append(
            {
                "channel": name,
                "beta": saturation.pop(ceiling),
                **{f"saturation_{k}": v for k, v in saturation.items()},
                **{f"adstock_{k}": v for k, v in source.adstock_parameters(name).items()},
                "adstock_l_max": source.adstock_l_max,
                "spend_max": float(spend.max()),
                "role": channel.role,
            }
        )
    parameters = pd.DataFrame(rows).set_index("channel")
    columns, terms, components = _terms(source, dates, calendar)
    truth = GroundTruth(
        parameters=parameters,
        intercept=source.intercept,
        outcome_scale=source.outcome_scale,
        noise_sigma=source.noise_sigma,
        contributions=contributions,
        terms=terms,
        components=components,
        adstock_family=source.adstock.family,
        saturation_family=source.saturation.family,
        adstock_first=source.adstock_first,
    )
    for name in source.channels:
        contributions[name] = truth.channel_response(name, frame[name].to_numpy())
    for name, values in columns.items():
        frame[name] = values
    noise = rng.normal(0.0, source.noise_sigma, n)
    baseline = source.outcome_scale * (source.intercept + noise)
    others = components.drop(columns=[DATE_COLUMN]).sum(axis=1).to_numpy()
    frame[TARGET_COLUMN] = baseline + contributions[list(source.channels)].sum(axis=1).to_numpy() + others
    return frame, truth



def synthetic_spend(cfg: MMMConfig) -> pd.DataFrame:
    """The market's synthetic weekly frame; ``attrs[SOURCE_ATTR]`` names the scenario, the market and the seed."""
    source = cfg.data.synthetic
    assert source is not None
    frame, _ = generate(source, cfg.model.calendar)
    frame.attrs[SOURCE_ATTR] = f"synthetic generator (scenario {cfg.scenario}, market {cfg.market}, seed {source.seed})"
    return frame


def landing_export(frame: pd.DataFrame, columns: ColumnMapping) -> pd.DataFrame:
    """The generated frame under a landing file's own column names (the inverse of the column mapping)."""
    rename = {
        DATE_COLUMN: columns.date,
        TARGET_COLUMN: columns.target,
        **dict(columns.channels.items()),
        **dict(columns.controls.items()),
    }
    missing = sorted(set(columns.channels) - set(frame.columns)) + sorted(set(columns.controls) - set(frame.columns))
    if missing:
        raise ValueError(
            f"the synthetic scenario cannot fill {missing}: map exactly its channels, competitors and controls"
        )
    return frame.rename(columns=rename)[list(rename.values())]
