"""Business plausibility of a fitted model: what a marketer would question before acting on it.

Four findings, each a non-blocking (WARN) check that alerts: a channel whose mean ROAS lies outside
``[roas_min, roas_max]``; a negative baseline (the intercept and non-media terms summed over the fitted weeks, i.e.
media explaining more than the whole KPI); one channel explaining more of the KPI than ``max_channel_share``; media
together above ``max_media_share``. They read the decision tables the champion already produced (the weekly
contributions and the ROAS table), so nothing is recomputed from the model.

Why these bounds (PlausibilityConfig; `python benchmarks/plausibility.py`, benchmarks/results/plausibility-*.md):
the reference scenario's fitted mean ROAS are 1.45-3.53 (true 1.46-3.55), its largest channel explains 17.7 % of the
KPI (true 17.8 %) and media 46.7 % (true 46.8 %); config/realistic.yaml's fitted ROAS are 0.79-5.63 (true 1.03-2.96),
largest channel 6.5 % (5.9 %), media 34.2 % (23.0 %). So [0.05, 20] leaves 3.6x of room around every fitted ROAS,
0.5 a 2.8x margin over the largest true channel share and 0.8 a 1.7x one over the reference's media. PyMC-Marketing
max-scales spend and KPI, so a units mistake moves every ROAS by exactly its factor: spend in cents (x100) or in
thousands (/1000) trips the ROAS check on both scenarios. They catch gross errors, not subtle ones: the realistic
data fitted without their trend and seasonality credit media with 47.4 % (largest channel 18.9 %, ROAS up to 19.0)
and pass every bound, since the reference scenario's true shares are as high.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.config.validation import PlausibilityConfig

ROAS_CHECK = "roas_plausible"
BASELINE_CHECK = "baseline_share_positive"
CHANNEL_SHARE_CHECK = "channel_share_plausible"
MEDIA_SHARE_CHECK = "media_share_plausible"
SHARE_CHECKS = (BASELINE_CHECK, CHANNEL_SHARE_CHECK, MEDIA_SHARE_CHECK)
#: What the checks' messages ask a person to look at, when a channel's figure is implausible.
CHANNEL_HINT = ("check that its spend is in the KPI's money units, whether a control that moves with it (price, "
                "promotions, distribution, seasonality) is missing, and its prior (an ROI prior or a lift test pins it)")


@dataclass(frozen=True)
class Finding:
    """One plausibility check's outcome: the value that decided it against its bound, in words, and its table."""

    check: str
    passed: bool
    value: float
    threshold: float
    message: str
    flagged: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def money_roas(roas: pd.DataFrame, kpi: KpiConfig) -> pd.Series | None:
    """Each channel's mean ROAS in money per unit of spend: the KPI's own for revenue, times the value of a
    conversion for conversions; None for conversions of unknown value (no bound applies)."""
    money = kpi.money_per_unit
    return None if money is None else roas.set_index("channel")["roas_mean"].astype(float) * money


def roas_finding(roas: pd.DataFrame, settings: PlausibilityConfig, kpi: KpiConfig | None = None) -> Finding:
    """Every channel's mean ROAS (the channel_roas table) within ``[roas_min, roas_max]``; the worst one (furthest
    outside, on a log scale) is the finding's value. Every channel off in the same direction points at units."""
    kpi = kpi or KpiConfig()
    values = money_roas(roas, kpi)
    if values is None:
        return Finding(ROAS_CHECK, True, float("nan"), float("nan"),
                       "not applicable: the KPI counts conversions of unknown value (kpi.value_per_unit), so a ROAS "
                       "in money cannot be judged")
    low, high = settings.roas_min, settings.roas_max
    table = pd.DataFrame({"channel": values.index, "roas_mean": values.to_numpy()})
    table["flag"] = np.where(table["roas_mean"] < low, "below", np.where(table["roas_mean"] > high, "above", ""))
    flagged = table[table["flag"] != ""]
    if flagged.empty:
        return Finding(ROAS_CHECK, True, float(values.max()), high,
                       f"every channel's mean ROAS is within [{low:g}, {high:g}] ({values.min():.3g}-{values.max():.3g})",
                       table=table)
    distance = np.abs(np.log10(flagged["roas_mean"].clip(lower=1e-12) / np.where(flagged["flag"] == "below", low, high)))
    worst = flagged.iloc[int(np.argmax(distance))]
    parts = [f"{r.channel}'s mean ROAS {r.roas_mean:.3g} is {r.flag} "
             f"{low if r.flag == 'below' else high:g}" for r in flagged.itertuples()]
    if len(flagged) == len(table) and flagged["flag"].nunique() == 1:
        hint = ("every channel is off the same way: check the units of spend and of the KPI (cents, thousands, "
                "another currency) before anything else")
    else:
        hint = CHANNEL_HINT
    bound = "validation.plausibility.roas_min" if worst["flag"] == "below" else "validation.plausibility.roas_max"
    return Finding(ROAS_CHECK, False, float(worst["roas_mean"]), low if worst["flag"] == "below" else high,
                   f"{'; '.join(parts)} ({bound}): {hint}", list(flagged["channel"]), table)


def contribution_shares(contributions: pd.DataFrame, channels: Sequence[str], baseline: str) -> pd.DataFrame:
    """Each channel's and the baseline's total over the fitted weeks (posterior means of the channel_contributions
    table) and its share of the KPI the model explains (channels plus baseline)."""
    components = [*channels, baseline]
    means = contributions[contributions["component"].isin(components)].groupby("component")["mean"].sum()
    totals = means.reindex(components).fillna(0.0)
    explained = float(totals.sum())
    share = totals / explained if explained != 0 else totals * np.nan
    return pd.DataFrame({"component": components, "total": totals.to_numpy(), "share": share.to_numpy()})


def share_findings(
    contributions: pd.DataFrame, channels: Sequence[str], baseline: str, settings: PlausibilityConfig
) -> list[Finding]:
    """The baseline's share above zero, the largest channel's share within ``max_channel_share`` and media's within
    ``max_media_share``, from the weekly contributions table (``baseline``: its baseline component's name)."""
    shares = contribution_shares(contributions, channels, baseline)
    media = shares[shares["component"] != baseline].set_index("component")["share"]
    base = float(shares.loc[shares["component"] == baseline, "share"].iloc[0])
    media_total = float(media.sum())
    largest = str(media.idxmax())
    return [
        _baseline_finding(base, shares),
        _channel_finding(media, largest, settings.max_channel_share, shares),
        _media_finding(media_total, settings.max_media_share, shares),
    ]


def _baseline_finding(base: float, shares: pd.DataFrame) -> Finding:
    if base >= 0:
        return Finding(BASELINE_CHECK, True, base, 0.0,
                       f"the baseline (intercept, controls, trend, seasonality, events) explains {_pct(base)} of the KPI",
                       table=shares)
    return Finding(
        BASELINE_CHECK, False, base, 0.0,
        f"the baseline (intercept, controls, trend, seasonality, events) sums to {_pct(base)} of the KPI over the "
        "fitted weeks: media are credited with more than the whole KPI. Check for a missing control or trend the "
        "channels stand in for, the units of spend and KPI, and the channels' priors (ROI priors keep media modest)",
        [], shares,
    )


def _channel_finding(media: pd.Series, largest: str, limit: float, shares: pd.DataFrame) -> Finding:
    over = media[media > limit]
    value = float(media[largest])
    if over.empty:
        return Finding(CHANNEL_SHARE_CHECK, True, value, limit,
                       f"the largest channel, {largest}, explains {_pct(value)} of the KPI (at most {_pct(limit)})",
                       table=shares)
    parts = ", ".join(f"{c} {_pct(s)}" for c, s in over.sort_values(ascending=False).items())
    return Finding(
        CHANNEL_SHARE_CHECK, False, value, limit,
        f"{parts} of the KPI, above {_pct(limit)} for one channel (validation.plausibility.max_channel_share): "
        f"{CHANNEL_HINT}", list(over.index), shares,
    )


def _media_finding(media_total: float, limit: float, shares: pd.DataFrame) -> Finding:
    if media_total <= limit:
        return Finding(MEDIA_SHARE_CHECK, True, media_total, limit,
                       f"media together explain {_pct(media_total)} of the KPI (at most {_pct(limit)})", table=shares)
    return Finding(
        MEDIA_SHARE_CHECK, False, media_total, limit,
        f"media together explain {_pct(media_total)} of the KPI, above {_pct(limit)} "
        "(validation.plausibility.max_media_share): check for a missing baseline driver (trend, seasonality, price, "
        "distribution) the channels absorb, the units of spend, and priors that keep media modest on weak data "
        "(model.roi_priors)", [], shares,
    )
