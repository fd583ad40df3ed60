"""Refresh stability: how far a refresh moved the ROAS and the budget advice from the previous champion's.

A weekly refresh adds one week of data; the model's answers should barely move. A large move has one of three
causes a person should look at before acting on the new numbers: a data error in the new weeks (a units mistake,
a partial week, swapped columns), a real change in the market, or a model that is not identified well enough to
give stable answers. This module only compares and flags; the Dagster layer turns the result into a non-blocking
(WARN) check, so the refresh still completes and the advice is there to review.

Compared per channel (the previous champion's table against the current one):

- ROAS (``roas_mean`` of :func:`mmm_assets.core.decisions.roas.channel_roas`): flagged when it moved by more than
  ``max_roas_change_pct`` % of the previous value, or the marginal ROAS (``mroas_mean``, what the advice follows)
  by more than ``max_mroas_change_pct`` %.
- Budget advice (:func:`mmm_assets.core.decisions.advice.recommendations`): flagged when the action reverses
  (INCREASE <-> REDUCE; when ``flag_action_flips``) or the channel's share of the proposed budget moved by more than
  ``max_share_change_pp`` percentage points. A move to or from HOLD is shown, not flagged.

The advice plans around the spend of the last ``horizon_weeks`` weeks (the default total, the relative bounds and the
"current" it is compared with), a window one new week moves by a 1/``horizon_weeks`` of itself. On realistic data
(config/realistic.yaml, 4 weeks; benchmarks/stability_realistic.py) ten clean new weeks moved that reference mix by
1.3-7.2 points of share and each refresh's own plan by up to 10.9 (reversing an advice in two of them), while the
new model replanned at the previous reference moved it by at most 1.7: the calendar, not the model. So the advice
compared is the current model's at the previous plan's reference spend and total (``replanned_recommendations``,
:func:`mmm_assets.core.decisions.advice.replanned_advice`), when the caller has it: only the model changed between
the two.

A channel present in only one of the two tables is always flagged.

How the default bounds were chosen, with the refreshes measured: docs/performance.md, "Refresh-stability bounds".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmm_assets.core.config import StabilityConfig

#: Actions of opposite direction: a change from one to the other is a flip.
OPPOSITE = {"INCREASE": "REDUCE", "REDUCE": "INCREASE"}
ROAS_COLUMNS = ("channel", "roas_mean", "roas_hdi_low", "roas_hdi_high", "mroas_mean")
RECOMMENDATION_COLUMNS = ("channel", "action", "optimized_spend")


def _check(table: pd.DataFrame, needed: tuple[str, ...], what: str) -> pd.DataFrame:
    absent = [c for c in needed if c not in table.columns]
    if absent:
        raise ValueError(f"{what} lacks column(s) {absent}; it needs {list(needed)}")
    repeated = sorted(set(table.loc[table["channel"].duplicated(), "channel"]))
    if repeated:
        raise ValueError(f"{what} lists channel(s) {repeated} more than once")
    return table.set_index("channel")


def _relative_pct(previous: pd.Series, current: pd.Series) -> pd.Series:
    """100 x (current - previous) / |previous|; inf when a zero became non-zero, 0 for zero to zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 * (current - previous) / previous.abs()
    return pct.where(previous != 0, np.where(current == previous, 0.0, np.inf))


def compare_roas(
    previous: pd.DataFrame, current: pd.DataFrame, max_change_pct: float, max_mroas_change_pct: float | None = None
) -> pd.DataFrame:
    """Per channel: the previous and current mean ROAS, the change (absolute and %), and whether it is flagged.

    Columns: ``channel, previous_roas, current_roas, change, change_pct, previous_hdi_low, previous_hdi_high,
    outside_previous_hdi, previous_mroas, current_mroas, mroas_change_pct, flagged, note``. ``flagged``: the ROAS
    moved by more than ``max_change_pct`` % (either way), the marginal ROAS by more than ``max_mroas_change_pct`` %
    (when given), or the channel is in only one table. ``outside_previous_hdi`` says whether the new mean left the
    previous 94 % HDI (a move the previous posterior itself found unlikely); it is shown, not flagged. Channels in
    the current table's order, then any only the previous one had.
    """
    for name, bound in (("max_change_pct", max_change_pct), ("max_mroas_change_pct", max_mroas_change_pct)):
        if bound is not None and not bound > 0:
            raise ValueError(f"{name} must be > 0, got {bound}")
    before = _check(previous, ROAS_COLUMNS, "the previous ROAS table")
    after = _check(current, ROAS_COLUMNS, "the current ROAS table")
    channels = list(after.index) + [c for c in before.index if c not in after.index]
    before, after = before.reindex(channels), after.reindex(channels)
    table = pd.DataFrame(
        {
            "channel": channels,
            "previous_roas": before["roas_mean"].to_numpy(float),
            "current_roas": after["roas_mean"].to_numpy(float),
        }
    )
    table["change"] = table["current_roas"] - table["previous_roas"]
    table["change_pct"] = _relative_pct(table["previous_roas"], table["current_roas"])
    table["previous_hdi_low"] = before["roas_hdi_low"].to_numpy(float)
    table["previous_hdi_high"] = before["roas_hdi_high"].to_numpy(float)
    inside = table["current_roas"].between(table["previous_hdi_low"], table["previous_hdi_high"])
    table["outside_previous_hdi"] = ~inside & table["current_roas"].notna() & table["previous_roas"].notna()
    table["previous_mroas"] = before["mroas_mean"].to_numpy(float)
    table["current_mroas"] = after["mroas_mean"].to_numpy(float)
    table["mroas_change_pct"] = _relative_pct(table["previous_mroas"], table["current_mroas"])
    notes, flagged = [], []
    for row in table.itertuples(index=False):
        if np.isnan(row.previous_roas) or np.isnan(row.current_roas):
            missing = "previous" if np.isnan(row.previous_roas) else "current"
            notes.append(f"no ROAS in the {missing} table (channel added, dropped or not estimable)")
            flagged.append(True)
            continue
        reasons = []
        if abs(row.change_pct) > max_change_pct:
            reasons.append(
                f"ROAS moved {row.change_pct:+.1f} % ({row.previous_roas:.3g} -> {row.current_roas:.3g}), "
                f"beyond ±{max_change_pct:g} %"
            )
        if max_mroas_change_pct is not None and abs(row.mroas_change_pct) > max_mroas_change_pct:
            reasons.append(
                f"marginal ROAS moved {row.mroas_change_pct:+.1f} % ({row.previous_mroas:.3g} -> "
                f"{row.current_mroas:.3g}), beyond ±{max_mroas_change_pct:g} %"
            )
        flagged.append(bool(reasons))
        notes.append(
            "; ".join(reasons)
            or f"ROAS moved {row.change_pct:+.1f} %, marginal ROAS {row.mroas_change_pct:+.1f} %: within bounds"
        )
    table["flagged"] = flagged
    table["note"] = notes
    return table


def compare_recommendations(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    max_share_change_pp: float | None = None,
    flag_action_flips: bool = True,
) -> pd.DataFrame:
    """Per channel: the previous and current advice, whether it changed or reversed, and the change in budget share.

    Columns: ``channel, previous_action, current_action, action_changed, flipped, previous_share_pct,
    current_share_pct, share_change_pp, flagged, note``. A share is the channel's ``optimized_spend`` as % of the
    plan's total; ``share_change_pp`` the change in percentage points. ``flipped``: INCREASE <-> REDUCE (a move to
    or from HOLD is a change, not a flip). ``flagged``: a flip (when ``flag_action_flips``), a share change beyond
    ``max_share_change_pp`` (when given), or a channel in only one table.
    """
    if max_share_change_pp is not None and not max_share_change_pp > 0:
        raise ValueError(f"max_share_change_pp must be > 0, got {max_share_change_pp}")
    before = _check(previous, RECOMMENDATION_COLUMNS, "the previous recommendations")
    after = _check(current, RECOMMENDATION_COLUMNS, "the current recommendations")
    channels = list(after.index) + [c for c in before.index if c not in after.index]

    def share(table: pd.DataFrame) -> pd.Series:
        spend = table["optimized_spend"].astype(float)
        total = spend.sum()
        return (100.0 * spend / total if total > 0 else spend * np.nan).reindex(channels)

    table = pd.DataFrame(
        {
            "channel": channels,
            "previous_action": before["action"].reindex(channels).to_numpy(object),
            "current_action": after["action"].reindex(channels).to_numpy(object),
            "previous_share_pct": share(before).to_numpy(float),
            "current_share_pct": share(after).to_numpy(float),
        }
    )
    table["share_change_pp"] = table["current_share_pct"] - table["previous_share_pct"]
    table["action_changed"] = table["previous_action"] != table["current_action"]
    table["flipped"] = [OPPOSITE.get(p) == c for p, c in zip(table["previous_action"], table["current_action"])]
    notes, flagged = [], []
    for row in table.itertuples(index=False):
        reasons = []
        if pd.isna(row.previous_action) or pd.isna(row.current_action):
            reasons.append(f"no advice in the {'previous' if pd.isna(row.previous_action) else 'current'} table")
        if row.flipped and flag_action_flips:
            reasons.append(f"advice reversed: {row.previous_action} -> {row.current_action}")
        if max_share_change_pp is not None and abs(row.share_change_pp) > max_share_change_pp:
            reasons.append(
                f"budget share moved {row.share_change_pp:+.1f} pp ({row.previous_share_pct:.1f} % -> "
                f"{row.current_share_pct:.1f} %), beyond ±{max_share_change_pp:g} pp"
            )
        flagged.append(bool(reasons))
        if reasons:
            notes.append("; ".join(reasons))
        else:
            change = f"{row.previous_action} -> {row.current_action}" if row.action_changed else row.current_action
            notes.append(f"{change}, budget share {row.share_change_pp:+.1f} pp")
    table["flagged"] = flagged
    table["note"] = notes
    return table[
        ["channel", "previous_action", "current_action", "action_changed", "flipped", "previous_share_pct",
         "current_share_pct", "share_change_pp", "flagged", "note"]
    ]


@dataclass(frozen=True)
class StabilityResult:
    """The comparison of a refresh with the previous champion: tables, the flagged channels and one message.

    ``compared`` is False when there was no previous champion (the first refresh): nothing is flagged then.
    ``replanned``: the advice was compared at the previous plan's reference spend (see the module docstring).
    """

    compared: bool
    roas: pd.DataFrame | None
    recommendations: pd.DataFrame | None
    flagged: list[str] = field(default_factory=list)
    message: str = ""
    replanned: bool = False

    @property
    def passed(self) -> bool:
        """Whether nothing was flagged."""
        return not self.flagged


def previous_reference(previous_recommendations: pd.DataFrame | None) -> dict[str, float] | None:
    """The spend the previous advice planned around (its ``current_spend`` per channel); None without one."""
    if previous_recommendations is None or "current_spend" not in previous_recommendations.columns:
        return None
    spend = previous_recommendations.set_index("channel")["current_spend"].astype(float)
    return None if spend.isna().any() or spend.index.duplicated().any() else spend.to_dict()


def assess_stability(
    settings: StabilityConfig,
    current_roas: pd.DataFrame,
    previous_roas: pd.DataFrame | None,
    current_recommendations: pd.DataFrame | None = None,
    previous_recommendations: pd.DataFrame | None = None,
    replanned_recommendations: pd.DataFrame | None = None,
) -> StabilityResult:
    """Compare the current ROAS (and advice, when both are given) with the previous champion's, per ``settings``.

    ``replanned_recommendations``: the current model's advice at the previous advice's reference spend and total
    (:func:`previous_reference`); when given it is compared with the previous advice instead of
    ``current_recommendations``, so the move of the recent-spend window is not counted as the model's.
    """
    if previous_roas is None:
        return StabilityResult(False, None, None, [], "no previous champion to compare with: nothing to flag")
    roas = compare_roas(previous_roas, current_roas, settings.max_roas_change_pct, settings.max_mroas_change_pct)
    recs = None
    advice = replanned_recommendations if replanned_recommendations is not None else current_recommendations
    if advice is not None and previous_recommendations is not None:
        recs = compare_recommendations(
            previous_recommendations, advice, settings.max_share_change_pp, settings.flag_action_flips
        )
    found = [(r.channel, r.note) for table in (roas, recs) if table is not None
             for r in table.itertuples(index=False) if r.flagged]
    flagged = list(dict.fromkeys(channel for channel, _ in found))
    if flagged:
        message = (
            f"{len(flagged)} channel(s) moved more than the stability bounds since the previous champion; review "
            "the new data and model before acting on the advice. " + " | ".join(f"{c}: {n}" for c, n in found)
        )
    else:
        largest = roas["change_pct"].abs().max()
        message = (
            f"every channel's ROAS is within ±{settings.max_roas_change_pct:g} % of the previous champion's "
            f"(largest move {largest:.1f} %, marginal ROAS {roas['mroas_change_pct'].abs().max():.1f} %)"
            + ("" if recs is None else "; no advice reversed or moved too far")
        )
    if recs is not None:
        message += (
            " (advice compared at the previous plan's reference spend)" if replanned_recommendations is not None
            else " (advice compared as planned, each around its own recent spend)"
        )
    return StabilityResult(True, roas, recs, flagged, message, replanned_recommendations is not None)
