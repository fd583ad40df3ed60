"""The media prior's shared scale: independent channels against one scale shared by the channels, on realistic data.

    python benchmarks/media_prior.py [--seeds 4] [--channels 8] [--weeks 156] [--sd 0.6]

Each cell is config/realistic.yaml (reseeded; with --channels above 8, its channels repeated as in
benchmarks/many_channels.py) fitted twice in its own process, with ``model.media_prior.shared_scale_sd`` null
(independent HalfNormal ceilings) and at --sd: divergences, worst R-hat, smallest bulk ESS, how many true ROAS lie in
their 94 % HDI, the media's estimated and true share of the KPI, fit seconds. Writes
benchmarks/results/media-prior-<UTC stamp>.md.
"""

import argparse
import tempfile
from pathlib import Path

import yaml
from many_channels import run_cell, scenario, write_results


def _variant(base: Path, seed: int, sd: float | None, folder: Path) -> Path:
    path = folder / f"{base.stem}_{seed}_{sd}.yaml"
    path.write_text(yaml.safe_dump({"extends": str(base), "scenario": path.stem,
                                    "data": {"synthetic": {"seed": seed}},
                                    "model": {"media_prior": {"shared_scale_sd": sd}}}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--sd", type=float, default=0.6)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = scenario(args.channels, args.weeks, Path(tmp))
        for seed in range(1, args.seeds + 1):
            for sd in (None, args.sd):
                row = run_cell(_variant(base, seed, sd, Path(tmp)), args.timeout)
                rows.append({"channels": args.channels, "seed": seed, "shared_scale_sd": sd, **row})
                print(rows[-1], flush=True)
    out = write_results(rows, "media-prior", "The media prior's shared scale",
                        f"python benchmarks/media_prior.py --seeds {args.seeds} --channels {args.channels} "
                        f"--weeks {args.weeks} --sd {args.sd}")
    print(out.read_text())


if __name__ == "__main__":
    main()
