"""Markets over different weeks in one pooled model: recovery and fit time, padded against the alternatives.

On config/markets_pooled.yaml cut to the test suite's size (104 weeks from 2019-01-07, 2 chains x (250 + 250) draws,
the test gates) this fits one pooled model per mode and reports, per market, the mean error of saturation lambda
(relative) and adstock alpha (absolute) against the generator's truth, with the fit's wall time, leapfrog steps per
draw (of the draws kept) and diagnostics:

- balanced: every market over every week (the reference);
- staggered: south opens later (``--opens``, default 2019-07-01: 79 of the 104 weeks), the others padded over them
  (core/modelling/panel.py);
- trimmed: the staggered data cut to the weeks every market has, what a pooled fit needed before markets could
  cover different weeks.

Each mode runs in this one process, in the order given; the first fit carries compile time. Writes
benchmarks/results/staggered-<UTC stamp>.md.

    .venv/bin/python benchmarks/staggered.py [--modes balanced staggered trimmed] [--opens 2019-07-01]
"""

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax"))
sys.path.insert(0, str(ROOT))

from mmm_assets.core.config import DATE_COLUMN, load_config  # noqa: E402
from mmm_assets.core.data.calendar import with_calendar  # noqa: E402
from mmm_assets.core.data.features import validate_features  # noqa: E402
from mmm_assets.core.evaluation import metrics  # noqa: E402
from mmm_assets.core.modelling import pooling, posterior  # noqa: E402
from mmm_assets.core.synthetic.generator import generate  # noqa: E402

SMALL = {"data": {"synthetic": {"end_date": "2020-12-31"}},
         "sampler": {"chains": 2, "draws": 250, "tune": 250, "max_draws": None},
         "validation": {"holdout_weeks": 6, "thresholds": {"ess_bulk_min": 100, "ess_tail_min": 100, "rhat_max": 1.05}}}


def scenario(folder: Path, opens: str | None):
    late = {"markets": {"data": {"south": {"synthetic": {"start_date": opens}}}}} if opens else {}
    path = folder / "staggered.yaml"
    path.write_text(yaml.safe_dump({"extends": str(ROOT / "config" / "markets_pooled.yaml"), **SMALL, **late,
                                    "paths": {"duckdb": str(folder / "mmm.duckdb"), "models_dir": str(folder)}}))
    return load_config(path)


def features(cfg, market: str):
    narrowed = cfg.for_market(market)
    frame, truth = generate(narrowed.data.synthetic, narrowed.model.calendar)
    frame = with_calendar(frame, narrowed)
    return validate_features(frame, narrowed.channels, narrowed.controls, narrowed.validation.min_weeks, market), truth


def run(mode: str, opens: str) -> list[dict]:
    cfg = scenario(Path(tempfile.mkdtemp()), None if mode == "balanced" else opens)
    data = {m: features(cfg, m) for m in cfg.market_names}
    frames = {m: f for m, (f, _) in data.items()}
    if mode == "trimmed":
        common = set.intersection(*(set(f[DATE_COLUMN]) for f in frames.values()))
        frames = {m: f[f[DATE_COLUMN].isin(common)].reset_index(drop=True) for m, f in frames.items()}
    started = time.monotonic()
    result = pooling.fit_pooled(cfg, frames, report=print)
    wall, d = time.monotonic() - started, result.diagnostics
    stats = result.mmm.idata.sample_stats
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    rows = []
    for market in cfg.market_names:
        table = metrics.recovery(posterior.posterior_parameters(pooling.market_view(result.mmm, market)),
                                 data[market][1].parameters).groupby("parameter")["error"].mean()
        rows.append({"mode": mode, "market": market, "weeks": len(frames[market]),
                     "lam_rel_error": table["saturation_lam"], "alpha_abs_error": table["adstock_alpha"],
                     "fit_s": wall, "steps_per_draw": steps, "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk,
                     "divergences": d.divergences})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["balanced", "staggered", "trimmed"])
    parser.add_argument("--opens", default="2019-07-01")
    args = parser.parse_args()
    table = pd.DataFrame([row for mode in args.modes for row in run(mode, args.opens)])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "benchmarks" / "results" / f"staggered-{stamp}.md"
    command = f"benchmarks/staggered.py --modes {' '.join(args.modes)} --opens {args.opens}"
    text = (f"# Markets over different weeks, pooled ({stamp})\n\n`{command}`, {os.cpu_count()} cores, other jobs may "
            f"have been running.\n\n"
            f"{table.round(4).to_markdown(index=False)}\n")
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
