"""The budget optimiser started from the nearest total's answer against from the current mix, on the default goals.

    python benchmarks/goal_search.py [--markets 6]

Refreshes N pooled markets with `python -m mmm_assets run` (benchmarks/markets_parallel.py's scenario with each
market's own truth and size, the reference scenario's draws), then, in one process, plans every market's default
goals (`goals.plan_goals`) twice each way in ABBA order: with each SLSQP call started from the answer at the nearest
total already solved (`budget._nearest_answer`, as shipped) and from the current mix (it returning None). Between
runs the optimiser's answers are cleared and its compiled function kept, so both ways pay the same compiling.
Prints the seconds each way, their ratio and how far the two ways' plans are apart; writes
benchmarks/results/goal-search-<UTC stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from kept import abba, forget_answers, markets  # noqa: E402 - benchmarks/ is on the path when run as a script


def _refreshed(folder: Path, markets: int) -> Path:
    """The scenario file of ``markets`` pooled markets, refreshed into ``folder``."""
    from markets_parallel import _scenario

    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    options = argparse.Namespace(weeks=156, full=True, pooling="pooled", channels=3, own_truths=True)
    config = _scenario(folder, markets, None, options)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("MMM_CONFIG", None)
    run = subprocess.run([sys.executable, "-m", "mmm_assets", "run", "--config", str(config)], env=env,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"the refresh failed (exit {run.returncode}); its output:\n{run.stdout[-3000:]}")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=6)
    args = parser.parse_args()
    from mmm_assets.core.decisions import budget, goals

    folder = Path(tempfile.mkdtemp(prefix="goal-search-"))
    _refreshed(folder, args.markets)
    nearest = budget._nearest_answer
    times: dict[str, list[float]] = {"nearest": [], "current": []}
    rows = []
    for i, market, narrowed, features, mmm in markets(folder):
        found: dict[str, list] = {}
        for way in abba(i, "current", "nearest"):
            budget._nearest_answer = nearest if way == "nearest" else (lambda planner, total: None)
            forget_answers()
            started = time.monotonic()
            plans = goals.plan_goals(mmm, features, narrowed.decisions.budget, narrowed.decisions.planner,
                                     narrowed.kpi, narrowed.owned_channels)
            times[way].append(time.monotonic() - started)
            found.setdefault(way, [(p.result.allocation["optimized_spend"].to_numpy(),
                                    p.result.optimized_response.mean) for p in plans])
        spend = max(float(np.abs(a - b).max() / a.sum()) for (a, _), (b, _) in zip(found["nearest"],
                                                                                    found["current"]))
        response = max(abs(a / b - 1) for (_, a), (_, b) in zip(found["nearest"], found["current"]))
        rows.append(f"| {market} | {spend:.1e} | {response:.1e} |")
    budget._nearest_answer = nearest
    shutil.rmtree(folder, ignore_errors=True)
    ratio = sum(times["nearest"]) / sum(times["current"])
    summary = (f"nearest total's answer {sum(times['nearest']):.1f} s, current mix {sum(times['current']):.1f} s "
               f"({len(times['nearest'])} plannings each): ratio {ratio:.3f}")
    print(summary)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"goal-search-{stamp}.md"
    out.write_text(f"# Goal searches: the optimiser's start ({stamp})\n\n`python benchmarks/goal_search.py --markets "
                   f"{args.markets}`\n\n{summary}\n\n| market | largest spend difference (share of the total) | "
                   f"largest relative difference in expected response |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
