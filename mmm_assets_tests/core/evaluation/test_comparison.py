"""The selection rule of the specification comparison, on hand-made scores (the fits: core/modelling/test_families.py)."""

import numpy as np
import pandas as pd

from mmm_assets.core.evaluation.comparison import select, with_differences


def _scored(rows: list[tuple[str, int, bool]], pointwise: dict[str, np.ndarray]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["candidate", "parameters", "passed_gates"])
    table["elpd_loo"] = [float(pointwise[name].sum()) for name in table["candidate"]]
    return with_differences(table, pointwise)


def test_the_best_elpd_among_passing_candidates_wins_a_clear_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(-1.0, 0.3, 100)
    table = _scored([("simple", 5, True), ("rich", 9, True)], {"simple": base, "rich": base + 0.5})
    assert table.set_index("candidate").loc["simple", "elpd_diff"] == -50.0
    assert table.set_index("candidate").loc["rich", "elpd_diff"] == 0.0
    chosen, reason = select(table)
    assert chosen == "rich" and "50.0 above simple" in reason


def test_a_tie_within_two_standard_errors_goes_to_the_simpler_specification():
    base = np.random.default_rng(1).normal(-1.0, 0.3, 100)
    noisy = base + 0.01 + 0.2 * (-1.0) ** np.arange(100)  # better by 1.0 in total, with an SE of the difference of 2
    table = _scored([("simple", 5, True), ("rich", 9, True)], {"simple": base, "rich": noisy})
    row = table.set_index("candidate").loc["simple"]
    assert row["elpd_diff"] < 0 and -row["elpd_diff"] <= 2 * row["diff_se"]
    chosen, reason = select(table)
    assert chosen == "simple" and "a tie, so the simpler one" in reason


def test_a_candidate_failing_a_gate_is_never_chosen_and_none_passing_keeps_the_scenario_model():
    rng = np.random.default_rng(2)
    base = rng.normal(-1.0, 0.3, 100)
    table = _scored([("fails", 5, False), ("passes", 9, True)], {"fails": base + 1.0, "passes": base})
    assert table.set_index("candidate").loc["passes", "elpd_diff"] == 0.0  # differences to the best passing one
    table["failed_gates"] = ["max_rhat", ""]
    chosen, reason = select(table)
    assert chosen == "passes"
    assert reason == "passes is the only candidate that passes every gate (fails failed max_rhat (ELPD +100.0, SE 0.0))"
    table["passed_gates"] = False
    chosen, reason = select(table)
    assert chosen is None and "no candidate passes every gate" in reason
