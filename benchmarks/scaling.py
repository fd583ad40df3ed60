"""`make bench-scaling`: fit time and peak memory as a brand grows (weeks x channels), on the same generator.

Each cell is a synthetic scenario built from the default one: the first channels' ground truth repeated with
perturbed parameters up to N channels, over W weeks, fitted with the default sampler settings in its own process
(so peak memory is the fit's own). Prints and writes a markdown table and JSON next to the other results.
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PY = sys.executable

CELL = """
import json, sys, time
from mmm_assets.core.config import load_config
from mmm_assets.core.features import validate_features
from mmm_assets.core.generator import generate
from mmm_assets.core.model import fit
cfg = load_config(sys.argv[1])
frame, _ = generate(cfg.data.synthetic)
features = validate_features(frame, cfg.channels, [], cfg.validation.min_weeks, "scaling")
result = fit(cfg, features, in_sample_predictive=False)
print(json.dumps({"fit_seconds": result.wall_seconds, "min_ess_bulk": result.diagnostics.min_ess_bulk,
                  "max_rhat": result.diagnostics.max_rhat, "divergences": result.diagnostics.divergences}))
"""


def scenario(weeks: int, channels: int, folder: Path) -> Path:
    """The default scenario stretched to ``weeks`` weeks and ``channels`` channels."""
    raw = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    synthetic = raw["data"]["synthetic"]
    base = list(synthetic["channels"].values())
    synthetic["channels"] = {
        f"channel_{i:02d}": {
            **base[i % len(base)],
            "saturation_lam": base[i % len(base)]["saturation_lam"] * (1 + 0.1 * (i // len(base))),
            "beta": base[i % len(base)]["beta"] / (1 + i // len(base)),
        }
        for i in range(channels)
    }
    start = dt.date.fromisoformat(str(synthetic["start_date"]))
    synthetic["end_date"] = str(start + dt.timedelta(weeks=weeks))
    raw["scenario"] = f"scaling_{weeks}w_{channels}c"
    path = folder / f"{raw['scenario']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weeks", type=int, nargs="+", default=[104, 208, 520])
    parser.add_argument("--channels", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weeks in args.weeks:
            for channels in args.channels:
                config = scenario(weeks, channels, Path(tmp))
                measured = json.loads(subprocess.run(
                    [PY, str(HERE / "measure.py"), PY, "-c", CELL, str(config)],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                ).stdout)
                if measured["returncode"] != 0:
                    raise RuntimeError(measured["stderr"])
                fit = json.loads(measured["stdout"].strip().splitlines()[-1])
                rows.append({"weeks": weeks, "channels": channels, **fit,
                             "process_seconds": measured["wall_seconds"], "peak_rss_mib": measured["peak_rss_mib"]})
                print(json.dumps(rows[-1]), flush=True)
    lines = ["| weeks | channels | fit, s | process, s | peak memory, MiB | min bulk ESS | max R-hat |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['weeks']} | {r['channels']} | {r['fit_seconds']:.1f} | {r['process_seconds']:.1f} | "
              f"{r['peak_rss_mib']:.0f} | {r['min_ess_bulk']:.0f} | {r['max_rhat']:.3f} |" for r in rows]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scaling-{stamp}.json").write_text(json.dumps(rows, indent=1))
    (args.out / f"scaling-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
