"""Refresh stability: the comparisons themselves, then two real refreshes (one clean new week, one faulty one)."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import STABILITY_ROAS_CHANGE_PCT
from mmm_assets.core.config.validation import PROFILE_STABILITY
from mmm_assets.core.decisions.advice import recommendations, replanned_advice
from mmm_assets.core.decisions.budget import optimize_budget
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.evaluation.stability import (
    assess_stability,
    compare_recommendations,
    compare_roas,
    previous_reference,
)
from mmm_assets.core.modelling.fitting import fit


def roas_table(values: dict[str, float], width: float = 0.1) -> pd.DataFrame:
    channels = list(values)
    roas = np.array([values[c] for c in channels])
    return pd.DataFrame({"channel": channels, "roas_mean": roas, "roas_hdi_low": roas * (1 - width),
                         "roas_hdi_high": roas * (1 + width), "mroas_mean": roas / 2})


def advice(actions: dict[str, tuple[str, float]], reference: dict[str, float] | None = None) -> pd.DataFrame:
    table = pd.DataFrame({"channel": list(actions), "action": [a for a, _ in actions.values()],
                          "optimized_spend": [s for _, s in actions.values()]})
    return table if reference is None else table.assign(current_spend=[reference[c] for c in actions])


def test_compare_roas_flags_moves_beyond_the_bound_and_lost_channels():
    previous = roas_table({"tv": 2.0, "search": 4.0, "social": 1.0, "radio": 0.5})
    current = roas_table({"tv": 2.1, "search": 3.0, "social": 1.0, "print": 0.8})
    table = compare_roas(previous, current, max_change_pct=10.0).set_index("channel")
    assert list(table.index) == ["tv", "search", "social", "print", "radio"]
    assert table.loc["tv", "change_pct"] == pytest.approx(5.0) and not table.loc["tv", "flagged"]
    assert table.loc["search", "change_pct"] == pytest.approx(-25.0) and table.loc["search", "flagged"]
    assert table.loc["search", "change"] == pytest.approx(-1.0) and table.loc["search", "outside_previous_hdi"]
    assert not table.loc["tv", "outside_previous_hdi"]
    assert "beyond ±10 %" in table.loc["search", "note"]
    assert table.loc["print", "flagged"] and "previous" in table.loc["print", "note"]
    assert table.loc["radio", "flagged"] and "current" in table.loc["radio", "note"]
    assert not table.loc["social", "flagged"] and table.loc["social", "change_pct"] == 0.0


def test_compare_roas_flags_a_marginal_roas_move_when_bounded():
    previous = roas_table({"tv": 2.0})
    current = previous.assign(mroas_mean=previous["mroas_mean"] * 1.3)  # same average ROAS, marginal +30 %
    assert not compare_roas(previous, current, 10.0)["flagged"].any()
    table = compare_roas(previous, current, 10.0, max_mroas_change_pct=20.0)
    assert table["flagged"].all() and table["mroas_change_pct"].iloc[0] == pytest.approx(30.0)
    assert "marginal ROAS moved +30.0 %" in table["note"].iloc[0]


def test_compare_roas_names_what_is_wrong_with_its_input():
    good = roas_table({"tv": 2.0})
    with pytest.raises(ValueError, match=r"the previous ROAS table lacks column\(s\) \['mroas_mean'\]"):
        compare_roas(good.drop(columns="mroas_mean"), good, 10.0)
    with pytest.raises(ValueError, match=r"current ROAS table lists channel\(s\) \['tv'\] more than once"):
        compare_roas(good, pd.concat([good, good]), 10.0)
    with pytest.raises(ValueError, match="max_change_pct must be > 0"):
        compare_roas(good, good, 0.0)


def test_compare_recommendations_flags_reversals_and_share_moves():
    previous = advice({"tv": ("INCREASE", 50.0), "search": ("HOLD", 30.0), "social": ("REDUCE", 20.0)})
    current = advice({"tv": ("REDUCE", 35.0), "search": ("INCREASE", 40.0), "social": ("REDUCE", 25.0)})
    table = compare_recommendations(previous, current, max_share_change_pp=12.0).set_index("channel")
    assert table["previous_share_pct"].sum() == pytest.approx(100) and table["current_share_pct"].sum() == 100
    assert table.loc["tv", "flipped"] and table.loc["tv", "flagged"]
    assert "INCREASE -> REDUCE" in table.loc["tv", "note"]
    assert table.loc["tv", "share_change_pp"] == pytest.approx(-15.0) and "beyond ±12 pp" in table.loc["tv", "note"]
    # HOLD -> INCREASE is a change, not a reversal; a 10 pp move is within 12 pp
    assert table.loc["search", "action_changed"] and not table.loc["search", "flipped"]
    assert not table.loc["search", "flagged"]
    assert not table.loc["social", "action_changed"] and not table.loc["social", "flagged"]
    unflagged = compare_recommendations(previous, current, None, flag_action_flips=False)
    assert not unflagged["flagged"].any() and unflagged["flipped"].any()


def test_assess_stability_without_and_with_a_previous_champion(small_config):
    settings = small_config().stability
    first = assess_stability(settings, roas_table({"tv": 2.0}), None)
    assert not first.compared and first.passed and "no previous champion" in first.message
    previous, current = roas_table({"tv": 2.0, "search": 4.0}), roas_table({"tv": 2.0, "search": 1.0})
    recs = advice({"tv": ("INCREASE", 60.0), "search": ("REDUCE", 40.0)})
    flipped = advice({"tv": ("REDUCE", 60.0), "search": ("REDUCE", 40.0)})
    result = assess_stability(settings, current, previous, flipped, recs)
    assert result.compared and not result.passed
    assert result.flagged == ["search", "tv"]  # search by its ROAS, tv by its reversed advice
    assert "search: ROAS moved -75.0 %" in result.message and "tv: advice reversed" in result.message
    calm = assess_stability(settings, previous, previous, recs, recs)
    assert calm.passed and "largest move 0.0 %" in calm.message


def test_the_advice_is_compared_at_the_previous_reference_when_replanned(small_config):
    """One new week moved the recent-spend window: the refresh's own plan around it moved tv's share 13 points, the
    model replanned at the previous reference spend did not move it (the clean refresh of issue 23)."""
    settings = small_config().stability
    roas = roas_table({"tv": 2.0, "search": 4.0})
    previous = advice({"tv": ("INCREASE", 60.0), "search": ("REDUCE", 40.0)}, {"tv": 50.0, "search": 50.0})
    assert previous_reference(previous) == {"tv": 50.0, "search": 50.0}
    assert previous_reference(previous.drop(columns="current_spend")) is None and previous_reference(None) is None
    around_new_week = advice({"tv": ("INCREASE", 47.0), "search": ("REDUCE", 53.0)}, {"tv": 37.0, "search": 63.0})
    replanned = advice({"tv": ("INCREASE", 61.0), "search": ("REDUCE", 39.0)}, {"tv": 50.0, "search": 50.0})
    as_planned = assess_stability(settings, roas, roas, around_new_week, previous)
    assert as_planned.flagged == ["tv", "search"] and not as_planned.replanned
    assert "budget share moved -13.0 pp" in as_planned.message and "as planned" in as_planned.message
    result = assess_stability(settings, roas, roas, around_new_week, previous, replanned)
    assert result.passed and result.replanned, result.message
    assert result.recommendations.set_index("channel").loc["tv", "share_change_pp"] == pytest.approx(1.0)
    assert "at the previous plan's reference spend" in result.message
    flipped = advice({"tv": ("REDUCE", 45.0), "search": ("INCREASE", 55.0)}, {"tv": 50.0, "search": 50.0})
    assert assess_stability(settings, roas, roas, around_new_week, previous, flipped).flagged == ["tv", "search"]


def test_config_rejects_a_non_positive_bound(small_config):
    from mmm_assets.core.config import ConfigError

    with pytest.raises(ConfigError, match="stability.max_roas_change_pct"):
        small_config({"stability": {"max_roas_change_pct": 0}})
    assert small_config().stability.max_roas_change_pct == STABILITY_ROAS_CHANGE_PCT


def test_the_bounds_default_to_the_validation_profiles(small_config):
    """Real data (the real profile) get the bounds measured on config/realistic.yaml; a scenario's own win."""
    assert small_config().stability.model_dump() == PROFILE_STABILITY["synthetic"]
    real = small_config({"validation": {"profile": "real"}}).stability
    assert real.model_dump() == PROFILE_STABILITY["real"]
    assert real.max_roas_change_pct == 20.0 and real.max_share_change_pp == 3.0 and not real.flag_action_flips
    own = small_config({"validation": {"profile": "real"}, "stability": {"max_share_change_pp": 7.0,
                                                                         "max_mroas_change_pct": None}}).stability
    assert (own.max_share_change_pp, own.max_mroas_change_pct, own.max_roas_change_pct) == (7.0, None, 20.0)


# ----- two real refreshes of the small scenario: weeks [0, n-1) is the previous champion, then week n arrives -----


@pytest.fixture(scope="module")
def previous(small_fit):
    """The previous champion (weeks [0, n-1)), its ROAS and its advice."""
    train = small_fit.features.iloc[:-1]
    mmm = fit(small_fit.cfg, train, in_sample_predictive=False).mmm
    roas = channel_roas(mmm, train)
    return roas, recommendations(optimize_budget(mmm, train, small_fit.cfg.decisions.budget), roas)


@pytest.fixture(scope="module")
def previous_roas(previous) -> pd.DataFrame:
    return previous[0]


def _shown(table: pd.DataFrame) -> str:
    return ", ".join(f"{r.channel} {r.change_pct:+.2f} %" for r in table.itertuples(index=False))


@pytest.mark.slow
def test_one_more_clean_week_stays_within_the_default_bound(small_fit, previous_roas):
    current = channel_roas(small_fit.mmm, small_fit.features)
    result = assess_stability(small_fit.cfg.stability, current, previous_roas)
    print(f"\nROAS change, weeks [0, n-1) -> [0, n): {_shown(result.roas)}")
    assert result.compared and result.passed, result.message
    assert result.roas["change_pct"].abs().max() < small_fit.cfg.stability.max_roas_change_pct


@pytest.mark.slow
def test_a_partial_new_week_trips_the_bound(small_fit, previous_roas):
    """The new week's KPI holds only half a week (the export ran before the week closed): the target halves while
    the spend is complete, so the week contradicts the history. No new maximum is set, so the model's max-scaling
    of target and spend is the same as in the previous fit: the move comes from the data, not the scaling."""
    features = small_fit.features.copy()
    last = features.index[-1]
    features.loc[last, "y"] *= 0.5
    assert features["y"].max() == small_fit.features["y"].iloc[:-1].max()
    shifted = fit(small_fit.cfg, features, in_sample_predictive=False).mmm
    result = assess_stability(small_fit.cfg.stability, channel_roas(shifted, features), previous_roas)
    print(f"\nROAS change with a half-week KPI in the new week: {_shown(result.roas)}")
    assert result.compared and not result.passed
    assert result.flagged and all(c in small_fit.cfg.channels for c in result.flagged)
    assert "review the new data" in result.message


@pytest.mark.slow
def test_a_clean_week_replanned_at_the_previous_reference_moves_the_advice_little(small_fit, previous):
    """The refresh's model plans at the previous advice's reference spend and total (not its own last weeks'), so only
    the model differs between the two plans compared."""
    previous_roas, previous_advice = previous
    cfg = small_fit.cfg
    roas = channel_roas(small_fit.mmm, small_fit.features)
    own = recommendations(optimize_budget(small_fit.mmm, small_fit.features, cfg.decisions.budget), roas)
    replanned = replanned_advice(small_fit.mmm, small_fit.features, cfg, previous_advice)
    reference = previous_advice.set_index("channel")["current_spend"]
    assert replanned.set_index("channel")["current_spend"].to_dict() == pytest.approx(reference.to_dict())
    assert replanned["optimized_spend"].sum() == pytest.approx(reference.sum(), rel=2 * cfg.decisions.budget.total_tolerance)
    assert not own.set_index("channel")["current_spend"].equals(reference)  # the window moved by one week
    result = assess_stability(cfg.stability, roas, previous_roas, own, previous_advice, replanned)
    moved = result.recommendations.set_index("channel")["share_change_pp"]
    print(f"\nshare change at the previous reference (pp): {moved.round(2).to_dict()}")
    assert result.replanned and result.passed, result.message
    assert replanned_advice(small_fit.mmm, small_fit.features, cfg, previous_advice.drop(columns="current_spend")) \
        is None
