"""SLSQP's stopping tolerance on refreshed markets: the library's default against tolerances relative to the
objective.

    python benchmarks/markets_parallel.py --markets 20 --limits auto --weeks 156 --full --pooling pooled \
        --own-truths --keep            # prints the folder it keeps
    python benchmarks/slsqp_tolerance.py <that folder> [--rtols 1e-10 1e-12 1e-14]

For every market of the kept refresh (its champion model and features), in one process: each total from 0.05 to 3
times today's spend (the goal searches' range) split by SLSQP from the current mix, once with the library's default
``ftol`` (1e-9, absolute, on the objective divided by its steepest gradient entry when that exceeds one) and once per
relative tolerance (``attempts.SLSQP_RTOL``: ``ftol`` = rtol x |the objective at the start|, the library's
rescaling then off). A way's
shortfall at a total is how much less its split is worth than the best split any way found there. Prints and writes
(benchmarks/results/slsqp-tolerance-<UTC stamp>.md) per way: seconds, the slowest total, totals that did not
converge, and the largest shortfall.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from kept import markets  # noqa: E402 - benchmarks/ is on the path when run as a script

MULTIPLES = (0.05, 0.3, 0.6, 1.0, 1.5, 2.0, 2.5, 3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rtols", type=float, nargs="+", default=[1e-10, 1e-12, 1e-14])
    args = parser.parse_args()
    from mmm_assets.core.decisions import attempts, budget
    from mmm_assets.core.decisions.budget import Attempt, Planner, channel_bounds, project

    shipped = attempts.SLSQP_RTOL
    ways = {"default": None, **{f"rtol {r:g}": r for r in args.rtols}}
    seconds, slowest = dict.fromkeys(ways, 0.0), dict.fromkeys(ways, 0.0)
    failed, shortfall = dict.fromkeys(ways, 0), dict.fromkeys(ways, 0.0)
    count = 0
    for _, market, narrowed, features, mmm in markets(args.folder):
        settings = narrowed.decisions.budget
        planner = Planner.build(mmm, features, settings, narrowed.owned_channels)
        base = planner.current.sum()
        for multiple in MULTIPLES:
            total = multiple * base
            lower, upper = channel_bounds(planner, settings, total)
            mix = project(planner.current / base * total, lower, upper, total)
            worth = {}
            for name, rtol in ways.items():
                attempts.SLSQP_RTOL = rtol
                started = time.monotonic()
                spend, method, _ = budget._solve_from(planner, settings, total, (lower, upper), [Attempt("SLSQP")],
                                                      mix, "the current mix")
                took = time.monotonic() - started
                seconds[name] += took
                slowest[name] = max(slowest[name], took)
                failed[name] += not method.startswith(budget.OPTIMIZED)
                worth[name] = budget._worth(planner, spend)
            best = max(worth.values())
            for name, value in worth.items():
                shortfall[name] = max(shortfall[name], (best - value) / abs(best))
        count += 1
        print(market, {k: round(v, 1) for k, v in seconds.items()}, flush=True)
    attempts.SLSQP_RTOL = shipped
    rows = [f"| {name} | {seconds[name]:.1f} | {slowest[name]:.2f} | {failed[name]} | {shortfall[name]:.1e} |"
            for name in ways]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"slsqp-tolerance-{stamp}.md"
    out.write_text(f"# SLSQP's stopping tolerance ({stamp})\n\n`python benchmarks/slsqp_tolerance.py <folder of "
                   f"markets_parallel.py --limits auto --weeks 156 --full --pooling pooled --own-truths --keep> "
                   f"--rtols {' '.join(f'{r:g}' for r in args.rtols)}`: {count} markets x {len(MULTIPLES)} totals "
                   f"({', '.join(map(str, MULTIPLES))} x today's spend), each from the current mix\n\n"
                   "| ftol | seconds | slowest total, s | not converged | largest shortfall (share of the best split's "
                   "worth) |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
