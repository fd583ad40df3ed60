"""Refresh stability on realistic data: how far one clean new week moves the ROAS, the marginal ROAS and the budget
plan, against a new week with an error in it; the measurement behind the `validation.stability` defaults.

    python benchmarks/stability_realistic.py [--config config/realistic.yaml] [--clean 4] [--corrupt all]

The scenario's data are generated with `--clean` more weeks than its own (data.synthetic.end_date moved later). The
generator normalises each spend pattern over the whole window and sizes its random draws by the number of weeks, so
the same seed with a later end date does not repeat the earlier weeks (checked below): every shorter window is cut
from the longest data, as the weeks a refresh adds to the ones it had.

Fits (the scenario's sampler settings): weeks [0, n) for n = N, ..., N + clean (N = the scenario's weeks), each
warm-started from the previous fit's posterior as a refresh is from its champion's; [0, N + 1) again with the next
sampler seed; and [0, N + 1) with its new week corrupted (the KPI halved or x 1.5, the largest channel's spend x 10
or missing, the largest and the smallest channel's spend swapped), each warm-started from [0, N).

Per pair (previous fit, refresh), the largest move over the channels of:
- the ROAS and marginal ROAS (core.evaluation.stability.compare_roas), the ROAS also in half-widths of the previous
  fit's 94 % HDI ("roas_hdi");
- the budget plan's shares as the advice shows them: each fit's plan of its own next horizon_weeks, at the spend of
  its own last horizon_weeks ("plan"); the shares of that reference spend ("reference"); the plan's shares net of
  the reference's (the change of optimised share minus current share, "net");
- the refresh's model replanned at the previous plan's reference spend and total ("replan", what the stability
  check now compares); the advice reversals of the plan and of the replan.

Writes benchmarks/results/stability-realistic-<UTC stamp>.md (and .json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN, load_config, merged
from mmm_assets.core.config.scenario import MMMConfig
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.decisions.advice import recommendations
from mmm_assets.core.decisions.budget import optimize_budget
from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.evaluation.stability import compare_recommendations, compare_roas
from mmm_assets.core.inference.warmstart import PreviousPosterior
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import generate

ROOT = Path(__file__).resolve().parents[1]
WEEK = pd.Timedelta(days=7)
#: Bounds large enough never to flag: the comparisons are read for their numbers here.
UNBOUNDED = 1e9


def corruptions(features: pd.DataFrame, channels: list[str]) -> dict[str, pd.DataFrame]:
    """The features with their last week corrupted, by kind of error."""
    last = features.index[-1]
    spend = features.loc[features.index[:-1], channels].sum()
    largest, smallest = spend.idxmax(), spend.idxmin()
    out = {}
    for name, column, factor in (("kpi x 0.5 (partial week)", TARGET_COLUMN, 0.5), ("kpi x 1.5", TARGET_COLUMN, 1.5),
                                 (f"{largest} spend x 10", largest, 10.0), (f"{largest} spend missing (0)", largest, 0)):
        frame = features.copy()
        frame.loc[last, column] *= factor
        out[name] = frame
    frame = features.copy()
    frame.loc[last, [largest, smallest]] = features.loc[last, [smallest, largest]].to_numpy()
    out[f"{largest} <-> {smallest} swapped"] = frame
    return out


def _config(base: Path, extra_weeks: int, draws: int | None, data_seed: int | None = None) -> MMMConfig:
    cfg = load_config(base)
    end = cfg.data.synthetic.end_date + dt.timedelta(days=7 * extra_weeks)
    raw = merged(cfg.model_dump(mode="json"), {"data": {"synthetic": {"end_date": end.isoformat()}}})
    if data_seed is not None:  # another draw of the same scenario
        raw = merged(raw, {"data": {"synthetic": {"seed": data_seed}}})
    if draws is not None:  # a quick try of the script, not a measurement
        raw = merged(raw, {"sampler": {"draws": draws, "tune": draws, "warm_tune": draws, "max_draws": None}})
    return MMMConfig.model_validate(raw)


def _prefix_check(cfg: MMMConfig, frame: pd.DataFrame, weeks: int) -> str:
    """Whether the scenario's own data are the longer data's first weeks."""
    own, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    same = len(own) == weeks and np.allclose(own.drop(columns=DATE_COLUMN), frame.iloc[:weeks].drop(columns=DATE_COLUMN))
    differs = (own[cfg.channels] - frame.iloc[:weeks][cfg.channels].to_numpy()).abs().max().max()
    return "identical" if same else f"not identical (largest spend difference {differs:,.0f})"


class Refresh:
    """One fit with its ROAS table, its plan, and the advice of that plan."""

    def __init__(self, cfg: MMMConfig, features: pd.DataFrame, warm: Refresh | None, seed_offset: int = 0):
        sampler = cfg.sampler.model_copy(update={"seed": cfg.sampler.seed + seed_offset})
        self.cfg, self.features = cfg, features
        started = time.perf_counter()
        warm_from = PreviousPosterior("previous fit", _posterior(warm.result.mmm)) if warm else None
        self.result = fit(cfg, features, sampler_cfg=sampler, warm_from=warm_from)
        self.seconds = time.perf_counter() - started
        self.roas = channel_roas(self.result.mmm, features, cfg.kpi)
        self.plan = optimize_budget(self.result.mmm, features, cfg.decisions.budget)
        self.advice = recommendations(self.plan, self.roas, cfg.decisions.hold_band_pct, cfg.kpi)

    def replan(self, previous: Refresh) -> pd.DataFrame:
        """This model's advice at the previous plan's reference spend (and so its total)."""
        reference = previous.plan.allocation.set_index("channel")["current_spend"].to_dict()
        plan = optimize_budget(self.result.mmm, self.features, self.cfg.decisions.budget, reference=reference)
        return recommendations(plan, self.roas, self.cfg.decisions.hold_band_pct, self.cfg.kpi)


def _posterior(mmm):
    posterior = mmm.idata.posterior
    return posterior.to_dataset() if hasattr(posterior, "to_dataset") else posterior


def _shares(table: pd.DataFrame, column: str) -> pd.Series:
    spend = table.set_index("channel")[column].astype(float)
    return 100 * spend / spend.sum()


def compare(previous: Refresh, current: Refresh) -> tuple[dict, pd.DataFrame]:
    """The largest moves of the pair, and the per-channel table."""
    roas = compare_roas(previous.roas, current.roas, UNBOUNDED, UNBOUNDED).set_index("channel")
    plan = compare_recommendations(previous.advice, current.advice, UNBOUNDED).set_index("channel")
    replan = compare_recommendations(previous.advice, current.replan(previous), UNBOUNDED).set_index("channel")
    before, after = previous.plan.allocation, current.plan.allocation
    reference = _shares(after, "current_spend") - _shares(before, "current_spend")
    net = (_shares(after, "optimized_spend") - _shares(after, "current_spend")) - (
        _shares(before, "optimized_spend") - _shares(before, "current_spend"))
    half_width = (roas["previous_hdi_high"] - roas["previous_hdi_low"]) / 2
    in_widths = roas["change"] / half_width  # the move in half-widths of the previous 94 % HDI
    table = pd.DataFrame({
        "roas_pct": roas["change_pct"], "hdi_half_width_pct": 100 * half_width / roas["previous_roas"],
        "roas_in_hdi_half_widths": in_widths, "mroas_pct": roas["mroas_change_pct"],
        "plan_pp": plan["share_change_pp"], "reference_pp": reference, "net_pp": net,
        "replan_pp": replan["share_change_pp"],
        "plan_action": plan["previous_action"] + " -> " + plan["current_action"],
        "replan_action": replan["previous_action"] + " -> " + replan["current_action"],
    })
    largest = {
        "roas_pct": roas["change_pct"].abs().max(), "roas_hdi": in_widths.abs().max(),
        "mroas_pct": roas["mroas_change_pct"].abs().max(), "plan_pp": plan["share_change_pp"].abs().max(), "reference_pp": reference.abs().max(),
        "net_pp": net.abs().max(), "replan_pp": replan["share_change_pp"].abs().max(),
        "plan_flips": int(plan["flipped"].sum()), "replan_flips": int(replan["flipped"].sum()),
    }
    return largest, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "realistic.yaml"))
    parser.add_argument("--clean", type=int, default=4, help="clean refreshes, one new week each")
    parser.add_argument("--corrupt", default="all", help="'all', 'none' or a number of corruptions to run")
    parser.add_argument("--data-seed", type=int, default=None, help="the generator's seed (default: the scenario's)")
    parser.add_argument("--draws", type=int, default=None, help="draws and tuning steps (a quick try; default: the "
                        "scenario's sampler)")
    args = parser.parse_args()
    base = Path(args.config)
    cfg = _config(base, args.clean, args.draws, args.data_seed)
    frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    first = len(frame) - args.clean
    prefix = _prefix_check(_config(base, 0, None, args.data_seed), frame, first)
    print(f"{len(frame)} weeks generated; the scenario's own {first} weeks are {prefix} to their first weeks",
          flush=True)
    full = weekly_features(cfg, frame)
    fits: list[Refresh] = []
    rows, details = [], {}
    for n in range(first, len(frame) + 1):
        fits.append(Refresh(cfg, full.iloc[:n].reset_index(drop=True), fits[-1] if fits else None))
        print(f"fitted {n} weeks in {fits[-1].seconds:.0f} s", flush=True)
        if len(fits) > 1:
            largest, table = compare(fits[-2], fits[-1])
            rows.append({"refresh": f"clean: {n - 1} -> {n} weeks", **largest})
            details[rows[-1]["refresh"]] = table
            print(rows[-1], flush=True)
    previous, clean_next = fits[0], fits[1]
    other_seed = Refresh(cfg, clean_next.features, previous, seed_offset=1)
    largest, table = compare(clean_next, other_seed)
    rows.append({"refresh": f"same {first + 1} weeks, next sampler seed", **largest})
    details[rows[-1]["refresh"]] = table
    print(rows[-1], flush=True)
    kinds = corruptions(clean_next.features, cfg.channels)
    count = {"all": len(kinds), "none": 0}.get(args.corrupt) or int(args.corrupt)
    for name, features in list(kinds.items())[:count]:
        largest, table = compare(previous, Refresh(cfg, features, previous))
        rows.append({"refresh": f"week {first + 1}: {name}", **largest})
        details[rows[-1]["refresh"]] = table
        print(rows[-1], flush=True)
    _write(args, base, prefix, first, pd.DataFrame(rows), details, fits)


def _write(args, base: Path, prefix: str, first: int, table: pd.DataFrame, details: dict, fits: list) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"stability-realistic-{stamp}"
    seconds = ", ".join(f"{f.seconds:.0f}" for f in fits)
    s = fits[0].cfg.sampler
    sampler = (f"{s.name}, {s.chains} chains x ({s.tune} tune + {s.draws} draws), warm starts with {s.warm_tune} tune, "
               f"target_accept {s.target_accept}, seed {s.seed}")
    text = [
        f"# Refresh stability on realistic data ({base.name}, {stamp})", "",
        f"`python benchmarks/stability_realistic.py --clean {args.clean} --corrupt {args.corrupt}"
        f"{'' if args.data_seed is None else f' --data-seed {args.data_seed}'}`", "",
        f"The scenario's {first} weeks generated alone are {prefix} to the first {first} weeks of the longer data, "
        "so every window is cut from the longest.", "",
        f"Sampler: {sampler}. Clean fits' wall seconds: {seconds}. Largest move over the channels (ROAS and marginal ROAS in %, shares "
        "in percentage points; plan = each refresh's own plan, reference = the shares of the spend it plans "
        "around, net = plan net of reference, replan = the refresh's model at the previous plan's reference):", "",
        table.round(2).to_markdown(index=False), "",
    ]
    for name, detail in details.items():
        text += [f"## {name}", "", detail.round(2).to_markdown(), ""]
    out.with_suffix(".md").write_text("\n".join(text))
    out.with_suffix(".json").write_text(json.dumps(table.to_dict("records"), indent=1, default=float))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
