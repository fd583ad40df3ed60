"""The budget optimiser's start from the nearest total's answer with and without its cap
(budget.WARM_ITERATIONS_PER_CHANNEL), on refreshed markets.

    python benchmarks/markets_parallel.py --markets 20 --limits auto --weeks 156 --full --pooling pooled \
        --own-truths --keep            # prints the folder it keeps
    python benchmarks/warm_cap.py <that folder> [market ...]      # every market, or those named

For every market of the kept refresh (its champion model and features), in one process: the budget scenarios and
the default goals (`budget.budget_scenarios`, `goals.plan_goals`) twice each way in ABBA order, "uncapped" (the
nearest answer's start given 1,000 iterations per channel) and "capped" (as shipped). The
optimiser's answers are cleared between plannings and its compiled function kept; a market's first planning (which
compiles it) is not counted. Prints and writes (benchmarks/results/warm-cap-<UTC stamp>.md) the seconds each way,
their ratio, the slowest single total each way, the fallbacks from SLSQP and how far the plans are apart.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from kept import abba, forget_answers, markets  # noqa: E402 - benchmarks/ is on the path when run as a script


def main() -> None:
    from mmm_assets.core.decisions import budget, goals

    folder = Path(sys.argv[1])
    caps = {"uncapped": 1000, "capped": budget.WARM_ITERATIONS_PER_CHANNEL}
    seconds, slowest, fallbacks = dict.fromkeys(caps, 0.0), dict.fromkeys(caps, 0.0), dict.fromkeys(caps, 0)
    allocate, way = budget._allocate, ["uncapped"]

    def timed(*args):
        started = time.monotonic()
        found = allocate(*args)
        slowest[way[0]] = max(slowest[way[0]], time.monotonic() - started)
        fallbacks[way[0]] += not found[1].endswith("SLSQP")
        return found

    budget._allocate = timed
    apart, count = 0.0, 0
    chosen = sys.argv[2:]
    picked = (m for m in markets(folder) if not chosen or m[1] in chosen)
    for i, (_, market, narrowed, features, mmm) in enumerate(picked):
        plans: dict[str, list[float]] = {}
        for n, name in enumerate(abba(i, "uncapped", "capped")):
            budget.WARM_ITERATIONS_PER_CHANNEL, way[0] = caps[name], name
            forget_answers()
            started = time.monotonic()
            budget.budget_scenarios(mmm, features, narrowed.decisions.budget, narrowed.owned_channels)
            found = goals.plan_goals(mmm, features, narrowed.decisions.budget, narrowed.decisions.planner,
                                     narrowed.kpi, narrowed.owned_channels)
            if n:
                seconds[name] += time.monotonic() - started
            plans.setdefault(name, [p.result.optimized_response.mean for p in found])
        apart, count = max(apart, *(abs(a / b - 1) for a, b in zip(plans["uncapped"], plans["capped"]))), count + 1
        print(market, {k: round(v, 1) for k, v in seconds.items()}, flush=True)
    budget.WARM_ITERATIONS_PER_CHANNEL = caps["capped"]
    summary = (f"capped {seconds['capped']:.1f} s, uncapped {seconds['uncapped']:.1f} s over {count} "
               f"markets: ratio {seconds['capped'] / seconds['uncapped']:.3f}; slowest total {slowest['capped']:.2f} "
               f"s capped, {slowest['uncapped']:.2f} s uncapped; totals not solved by SLSQP: {fallbacks['capped']} "
               f"capped, {fallbacks['uncapped']} uncapped; plans' expected responses at most {apart:.1e} apart")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"warm-cap-{stamp}.md"
    out.write_text(f"# The nearest total's start, capped at {caps['capped']} iterations per channel ({stamp})\n\n"
                   f"`python benchmarks/warm_cap.py <folder of markets_parallel.py --markets {count} "
                   f"--limits auto --weeks 156 --full --pooling pooled --own-truths --keep>`\n\n{summary}\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
