"""What-if plan files: read like landing files (file, line, column in every error), scored against the truth."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import BudgetSettings
from mmm_assets.core.decisions.budget import Planner, optimize_budget, true_plan_response
from mmm_assets.core.decisions.plans import evaluate_plans, read_plan, read_plans
from mmm_assets.core.errors import InputError

CHANNELS = ["adwords", "facebook", "linkedin"]
START = pd.Timestamp("2026-01-05")


def _write(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def _weekly(weeks: int, start: pd.Timestamp = START, **spend: list[float]) -> pd.DataFrame:
    dates = pd.date_range(start, periods=weeks, freq="7D").strftime("%Y-%m-%d")
    return pd.DataFrame({"date": dates, **{c: spend.get(c, [10.0] * weeks) for c in CHANNELS}})


def test_a_totals_plan_is_spread_evenly_over_the_horizon(tmp_path):
    path = _write(tmp_path, "more search.csv", pd.DataFrame({"channel": CHANNELS[::-1], "spend": [40, 20, 80]}))
    plan = read_plan(path, CHANNELS, START, 4)
    assert plan.name == "more search" and list(plan.weekly.columns) == CHANNELS
    assert list(plan.weekly.index) == list(pd.date_range(START, periods=4, freq="7D"))
    assert plan.totals.tolist() == [80.0, 20.0, 40.0] and (plan.weekly.nunique() == 1).all()


def test_a_weekly_plan_keeps_its_flighting_and_its_own_length(tmp_path):
    path = _write(tmp_path, "front.csv", _weekly(6, adwords=[30, 30, 10, 10, 5, 5]))
    plan = read_plan(path, CHANNELS, START, 4)
    assert len(plan.weekly) == 6 and plan.weekly["adwords"].tolist() == [30, 30, 10, 10, 5, 5]


@pytest.mark.parametrize(("frame", "messages"), [
    (pd.DataFrame({"channel": ["adwords", "adwords", "tv"], "spend": ["1", "-2", "3,000"]}), [
        "column 'spend': not a plain number at line 4 ('3,000'); thousands separators",
        "column 'channel': not a model channel at line 4 ('tv')",
        "column 'channel': a channel given twice at line 2 ('adwords'), line 3 ('adwords')",
        "column 'spend': negative spend at line 3 ('-2')",
        "no row for channel(s) facebook, linkedin; give every channel (0 for no spend)",
    ]),
    (_weekly(4).assign(adwords=["1", "x", "1", "1"], tv=1).drop(columns="linkedin"), [
        "columns ['tv'] are not model channels",
        "no column for channel(s) linkedin",
        "column 'adwords': not a plain number at line 3 ('x')",
    ]),
    (_weekly(4).drop(index=1), [
        "column 'date': line 3 is 2026-01-19 where the week 2026-01-12 was expected; a plan's weeks are consecutive",
    ]),
    (_weekly(4, start=START - pd.Timedelta(days=7)), ["line 2 is 2025-12-29 where the week 2026-01-05 was expected"]),
    (_weekly(3).assign(date=["2026-01-05", "05/01/2026", ""]), [
        "column 'date': missing or not an ISO-8601 date (YYYY-MM-DD) at line 3 ('05/01/2026'), line 4 ('')",
    ]),
    (pd.DataFrame({"week": ["2026-01-05"], "adwords": [1]}), ["line 1 must name either the columns 'channel' and"]),
])
def test_a_bad_plan_file_is_rejected_naming_file_line_and_column(tmp_path, frame, messages):
    path = _write(tmp_path, "plan.csv", frame)
    with pytest.raises(InputError) as err:
        read_plan(path, CHANNELS, START, 4)
    assert str(err.value).startswith(str(path))
    for message in messages:
        assert message in str(err.value)


def test_a_folder_with_one_bad_plan_is_rejected_whole(tmp_path):
    _write(tmp_path, "good.csv", pd.DataFrame({"channel": CHANNELS, "spend": [1, 2, 3]}))
    _write(tmp_path, "bad.csv", pd.DataFrame({"channel": CHANNELS, "spend": [1, 2, -3]}))
    (tmp_path / "bad name!.csv").write_text("channel,spend\n")
    with pytest.raises(InputError, match=r"2 plan file\(s\) in .* rejected; nothing was scored") as err:
        read_plans(tmp_path, CHANNELS, START, 4)
    assert "bad.csv" in str(err.value) and "a plan's name (the file name) must be" in str(err.value)
    assert read_plans(tmp_path / "missing", CHANNELS, START, 4) == []


@pytest.mark.slow
def test_plans_are_scored_side_by_side_and_agree_with_the_truth(small_fit, tmp_path):
    mmm, features, truth = small_fit.mmm, small_fit.features, small_fit.truth
    settings = BudgetSettings()
    planner = Planner.build(mmm, features, settings)
    current = dict(zip(planner.channels, planner.current))
    _write(tmp_path, "same as today.csv", pd.DataFrame({"channel": list(current), "spend": list(current.values())}))
    shares = [0.4, 0.3, 0.2, 0.1, 0.0, 0.0]  # front-loaded over six weeks
    flighted = _weekly(6, planner.start, **{c: [t * s for s in shares] for c, t in current.items()})
    _write(tmp_path, "front loaded.csv", flighted)
    budget = optimize_budget(mmm, features, settings)
    goal = ("a goal", np.asarray(planner.current) * 0.5)
    evaluation = evaluate_plans(mmm, features, settings, budget.allocation["optimized_spend"], [goal], tmp_path)
    table = evaluation.table.set_index("plan")

    assert list(table.index) == ["current", "optimized", "a goal", "front loaded", "same as today"]
    assert list(table["source"]) == ["current", "optimized", "goal", "what_if", "what_if"]
    # a file of today's totals is today's plan, draw for draw
    same = table.loc["same as today"]
    assert same["vs_current_mean"] == pytest.approx(0.0, abs=1e-6 * same["expected_response_mean"])
    assert table.loc["optimized", "expected_response_mean"] == pytest.approx(budget.optimized_response.mean)
    assert table.loc["optimized", "prob_better_than_current"] > 0.9
    # a flighted plan: the model's response agrees with the truth's, and front-loading costs against an even spread
    weekly = flighted.drop(columns="date").astype(float)
    true = true_plan_response(truth, features, weekly)
    front = table.loc["front loaded"]
    assert front["expected_response_hdi_low"] <= true <= front["expected_response_hdi_high"]
    assert front["weeks"] == 6 and front["total_spend"] == pytest.approx(sum(current.values()))
    assert front["expected_response_mean"] < same["expected_response_mean"]
    for row in table.itertuples():
        assert row.expected_response_hdi_low <= row.expected_response_mean <= row.expected_response_hdi_high
        assert row.roas_mean == pytest.approx(row.expected_response_mean / row.total_spend, rel=1e-9)
    long = evaluation.long()
    assert len(long) == 5 * len(planner.channels)
    assert long.groupby("plan")["share_pct"].sum().to_numpy() == pytest.approx(np.full(5, 100.0))

    _write(tmp_path, "current.csv", pd.DataFrame({"channel": list(current), "spend": list(current.values())}))
    with pytest.raises(InputError, match="the plan name 'current' is taken by a built-in plan; rename the file"):
        evaluate_plans(mmm, features, settings, budget.allocation["optimized_spend"], [goal], tmp_path)
