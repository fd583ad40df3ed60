"""`make bench-samplers`: the NUTS backends side by side on the reference scenario, with our sampler settings.

For each backend (numpyro, nutpie, PyMC's own) the same fit (:func:`mmm_assets.core.modelling.fitting.fit`, the
scenario's chains / tune / draws, no ESS top-up, no posterior predictive) runs twice in its own process on an empty pair
of compile caches of its own: the first run is cold (everything compiled), the second warm (caches kept). Fit seconds
include compiling; the quality bar is the scenario's R-hat, bulk/tail ESS and divergence gates. Writes
benchmarks/results/samplers-<UTC stamp>.{json,md} and prints the table.
"""

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

import yaml
from run import HERE, ROOT, cache_env
from scaling import measure_cell

from mmm_assets.core.config import load_config

SAMPLERS = ("numpyro", "nutpie", "pymc")


def _cell(config: Path, sampler: str, work: Path) -> dict:
    """One backend's fit, cold then warm, on its own caches under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    scenario = work / f"{sampler}.yaml"
    scenario.write_text(yaml.safe_dump({"extends": str(config.resolve()), "sampler": {"name": sampler,
                                                                                       "max_draws": None}}))
    env = cache_env(work / sampler / "pytensor", work / sampler / "jax")
    cold, warm = (measure_cell(scenario, env) for _ in range(2))
    return {"sampler": sampler, "cold": cold, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "default.yaml")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    cfg = load_config(args.config)
    t, s = cfg.validation.thresholds, cfg.sampler
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = HERE / ".work" / f"samplers-{stamp}"
    rows = []
    for sampler in SAMPLERS:
        print(f"{sampler}: cold, then warm ...", flush=True)
        rows.append(_cell(args.config, sampler, work))
    shutil.rmtree(work, ignore_errors=True)

    def passes(run: dict) -> bool:
        return run["max_rhat"] <= t.rhat_max and run["min_ess_bulk"] >= t.ess_bulk_min and run["divergences"] == 0

    lines = [f"{s.chains} chains x ({s.tune} tune + {s.draws} draws), reference scenario; fit seconds include compiling.",
             "", "| sampler | cold fit, s | warm fit, s | warm process, s | peak MiB | min bulk ESS | max R-hat | gates |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['cold']['fit_seconds']:.1f} | {r['warm']['fit_seconds']:.1f} | "
              f"{r['warm']['process_seconds']:.1f} | {r['warm']['peak_rss_mib']:.0f} | {r['warm']['min_ess_bulk']:.0f} | "
              f"{r['warm']['max_rhat']:.3f} | {'pass' if passes(r['warm']) else 'FAIL'} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"samplers-{stamp}.json").write_text(json.dumps(rows, indent=1))
    (args.out / f"samplers-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
