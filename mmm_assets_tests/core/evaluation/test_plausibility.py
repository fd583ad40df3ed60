"""Business plausibility on hand-made ROAS and contribution tables, each built to trip one check (no MCMC)."""

import math

import pandas as pd
import pytest

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.config.validation import PlausibilityConfig
from mmm_assets.core.evaluation.plausibility import (
    BASELINE_CHECK,
    CHANNEL_SHARE_CHECK,
    MEDIA_SHARE_CHECK,
    ROAS_CHECK,
    contribution_shares,
    roas_finding,
    share_findings,
)

DEFAULTS = PlausibilityConfig()
BASELINE = "baseline"


def roas(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"channel": list(values), "roas_mean": list(values.values())})


def contributions(totals: dict[str, float], weeks: int = 4) -> pd.DataFrame:
    """The channel_contributions table's long shape: each component's total spread evenly over ``weeks`` weeks, and
    the prediction (channels plus baseline)."""
    dates = pd.date_range("2024-01-01", periods=weeks, freq="W-MON")
    totals = {**totals, "predicted": sum(totals.values())}
    rows = [{"date": d, "component": c, "mean": t / weeks, "hdi_low": 0.0, "hdi_high": 0.0}
            for c, t in totals.items() for d in dates]
    return pd.DataFrame(rows)


def by_check(findings) -> dict:
    return {f.check: f for f in findings}


def test_roas_within_the_bounds_passes():
    finding = roas_finding(roas({"search": 3.2, "tv": 0.8, "radio": 5.6}), DEFAULTS)
    assert finding.check == ROAS_CHECK and finding.passed and finding.flagged == []
    assert (finding.value, finding.threshold) == (5.6, DEFAULTS.roas_max)


def test_a_channel_above_the_bound_is_named_with_its_value_and_what_to_check():
    finding = roas_finding(roas({"search": 3.0, "tv": 54.0, "radio": 1.5}), DEFAULTS)
    assert not finding.passed and finding.flagged == ["tv"]
    assert (finding.value, finding.threshold) == (54.0, DEFAULTS.roas_max)
    assert "tv's mean ROAS 54 is above 20" in finding.message and "roas_max" in finding.message
    assert "spend" in finding.message and "control" in finding.message and "prior" in finding.message


def test_every_channel_off_the_same_way_points_at_the_units():
    # spend in cents: the model max-scales spend, so every ROAS is exactly 100 times too small
    finding = roas_finding(roas({"search": 0.032, "tv": 0.008, "radio": 0.3}), DEFAULTS)
    assert not finding.passed and finding.flagged == ["search", "tv"]
    assert (finding.value, finding.threshold) == (0.008, DEFAULTS.roas_min)  # the furthest outside
    assert "tv's mean ROAS 0.008 is below 0.05" in finding.message
    assert "control" in finding.message  # radio is plausible: not every channel is off, so not only units
    every = roas_finding(roas({"search": 0.032, "tv": 0.008}), DEFAULTS)
    assert "every channel is off the same way" in every.message and "units of spend" in every.message


def test_conversions_are_judged_in_money_and_not_at_all_without_a_value():
    table = roas({"search": 0.02, "tv": 0.5})  # conversions per unit of spend
    worth_50 = roas_finding(table, DEFAULTS, KpiConfig(type="conversions", value_per_unit=50.0))
    assert not worth_50.passed and worth_50.flagged == ["tv"] and worth_50.value == pytest.approx(25.0)
    unknown = roas_finding(table, DEFAULTS, KpiConfig(type="conversions"))
    assert unknown.passed and math.isnan(unknown.value) and "not applicable" in unknown.message


def test_plausible_shares_pass():
    findings = by_check(share_findings(contributions({"search": 20, "tv": 15, BASELINE: 65}), ["search", "tv"],
                                       BASELINE, DEFAULTS))
    assert all(f.passed for f in findings.values())
    assert findings[BASELINE_CHECK].value == pytest.approx(0.65)
    assert findings[CHANNEL_SHARE_CHECK].value == pytest.approx(0.20) and "search" in findings[CHANNEL_SHARE_CHECK].message
    assert findings[MEDIA_SHARE_CHECK].value == pytest.approx(0.35)


def test_a_negative_baseline_trips_its_check_and_media_share():
    findings = by_check(share_findings(contributions({"search": 60, "tv": 50, BASELINE: -10}), ["search", "tv"],
                                       BASELINE, DEFAULTS))
    baseline = findings[BASELINE_CHECK]
    assert not baseline.passed and baseline.value == pytest.approx(-0.10) and baseline.threshold == 0.0
    assert "-10.0 % of the KPI" in baseline.message and "missing control" in baseline.message
    assert not findings[MEDIA_SHARE_CHECK].passed and findings[MEDIA_SHARE_CHECK].value == pytest.approx(1.10)


def test_one_channel_explaining_too_much_is_named():
    findings = by_check(share_findings(contributions({"search": 10, "tv": 60, BASELINE: 30}), ["search", "tv"],
                                       BASELINE, DEFAULTS))
    channel = findings[CHANNEL_SHARE_CHECK]
    assert not channel.passed and channel.flagged == ["tv"] and channel.value == pytest.approx(0.60)
    assert "tv 60.0 % of the KPI, above 50.0 %" in channel.message and "max_channel_share" in channel.message
    assert findings[BASELINE_CHECK].passed and findings[MEDIA_SHARE_CHECK].passed  # 70 % <= 80 %


def test_media_together_above_their_bound():
    channels = ["a", "b", "c", "d"]
    findings = by_check(share_findings(contributions({"a": 25, "b": 25, "c": 20, "d": 15, BASELINE: 15}), channels,
                                       BASELINE, DEFAULTS))
    media = findings[MEDIA_SHARE_CHECK]
    assert not media.passed and media.value == pytest.approx(0.85) and media.threshold == DEFAULTS.max_media_share
    assert "85.0 %" in media.message and "trend, seasonality, price" in media.message
    assert findings[CHANNEL_SHARE_CHECK].passed and findings[BASELINE_CHECK].passed


def test_shares_are_of_the_explained_kpi_and_ignore_the_prediction_row():
    shares = contribution_shares(contributions({"search": 30, BASELINE: 90}), ["search"], BASELINE)
    assert shares.set_index("component")["share"].to_dict() == pytest.approx({"search": 0.25, BASELINE: 0.75})
