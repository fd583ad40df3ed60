"""A plan's marginal return from its own free channels (the envelope theorem, as shipped) against from two more
optimised plans, on the default goals of refreshed markets.

    python benchmarks/markets_parallel.py --markets 20 --limits auto --weeks 156 --full --pooling pooled \
        --own-truths --keep            # prints the folder it keeps
    python benchmarks/marginal.py <that folder>

For every market of the kept refresh (its champion model and features), in one process: the default goals
(`goals.plan_goals`) twice each way in ABBA order, "reoptimised" (`_Curve.reoptimised_mroas`: the plans at
(1 +- marginal_step) x the total, each optimised) and "envelope" (`_Curve.mroas` as shipped). The optimiser's answers
are cleared between plannings and its compiled function kept; a market's first planning is not counted. Prints and
writes (benchmarks/results/marginal-<UTC stamp>.md) the seconds each way, their ratio, and per goal how far the two
ways' totals and marginal returns are apart.
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
    from mmm_assets.core.decisions import goals

    folder = Path(sys.argv[1])
    shipped = goals._Curve.mroas
    ways = {"reoptimised": goals._Curve.reoptimised_mroas, "envelope": shipped}
    seconds = dict.fromkeys(ways, 0.0)
    rows, count = [], 0
    for i, market, narrowed, features, mmm in markets(folder):
        found: dict[str, list] = {}
        for n, name in enumerate(abba(i, "reoptimised", "envelope")):
            goals._Curve.mroas = ways[name]
            forget_answers()
            started = time.monotonic()
            plans = goals.plan_goals(mmm, features, narrowed.decisions.budget, narrowed.decisions.planner,
                                     narrowed.kpi, narrowed.owned_channels)
            if n:
                seconds[name] += time.monotonic() - started
            found.setdefault(name, plans)
        for old, new in zip(found["reoptimised"], found["envelope"], strict=True):
            before, after = old.result, new.result
            rows.append(f"| {market} | {new.goal.label} | {before.total_budget:,.0f} | {after.total_budget:,.0f} | "
                        f"{after.total_budget / before.total_budget - 1:+.2%} | {old.mroas:.4f} | {new.mroas:.4f} | "
                        f"{after.optimized_response.mean / before.optimized_response.mean - 1:+.2%} |")
        count += 1
        print(market, {k: round(v, 1) for k, v in seconds.items()}, flush=True)
    goals._Curve.mroas = shipped
    summary = (f"envelope {seconds['envelope']:.1f} s, reoptimised {seconds['reoptimised']:.1f} s over "
               f"{count} markets' default goals: ratio {seconds['envelope'] / seconds['reoptimised']:.3f}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"marginal-{stamp}.md"
    out.write_text(f"# A plan's marginal return: envelope against reoptimised ({stamp})\n\n"
                   f"`python benchmarks/marginal.py <folder of markets_parallel.py --limits auto --weeks 156 --full "
                   f"--pooling pooled --own-truths --keep>`\n\n{summary}\n\n"
                   "| market | goal | total, reoptimised | total, envelope | apart | marginal return, reoptimised | "
                   "marginal return, envelope | expected response apart |\n|---|---|---|---|---|---|---|---|\n"
                   + "\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
