"""The scale curves of the README: time and peak memory against geos, time against channels, from result files.

    .venv/bin/python benchmarks/curves.py [--out docs/scale_curves.png]

Reads the newest `benchmarks/results/` file of each kind, measures nothing:

- geos: `scale-*.json` (our pooled fit and Google Meridian on the same data, `make bench-scale`) and the newest
  `geos-*.json` files holding the pooled fit and the separate fits in one process (`benchmarks/geos.py`), at 3
  channels a geo (runs with `--channels N` are other curves) and not measured under load;
- channels: every `many-channels-*.json` (`benchmarks/many_channels.py`, with `--baseline` PyMC-Marketing's defaults
  beside ours, `--variant cold_name=nutpie` our model on nutpie), the newest row per series and channel count;
  files with a `load` entry (measured beside another job) are left out.

A filled marker passed its convergence gate (R-hat <= 1.01, bulk ESS >= 400, and for the channels no divergence), a
hollow one did not. Log-scaled time axes, since the tools differ by an order of magnitude.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.ticker import FuncFormatter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GATE = {"max_rhat": 1.01, "min_ess_bulk": 400.0}


def newest(pattern: str, holding: str | None = None) -> dict:
    """The newest result file matching ``pattern`` (whose rows have a ``holding`` variant, when given), loaded;
    files measured beside another job (a ``load`` entry) or at other than 3 channels a geo are passed over."""
    for path in sorted(RESULTS.glob(pattern), reverse=True):
        data = json.loads(path.read_text())
        if "load" in data or data.get("args", {}).get("channels", 3) != 3:
            continue
        if holding is None or any(row.get("variant") == holding or row.get("fit") == holding for row in data["rows"]):
            return data | {"file": path.name}
    raise SystemExit(f"no {pattern} in {RESULTS}{f' with {holding}' if holding else ''}: run its benchmark first")


def channel_rows() -> tuple[list[dict], list[str]]:
    """Every `many-channels-*.json` row, labelled by what was fitted (``series``: its ``fit``, e.g. "ours",
    "ours cold_name=nutpie", "baseline"; files from before --variant said ``--cold-name X`` in their command), the
    newest row kept per series and channel count; the files."""
    newest_rows: dict[tuple[str, int], dict] = {}
    files = sorted(RESULTS.glob("many-channels-*.json"))
    for path in files:
        data = json.loads(path.read_text())
        if "load" in data:  # measured beside another job: its times are not comparable with the others'
            continue
        cold = data["command"].split("--cold-name ")[1].split()[0] if "--cold-name" in data["command"] else None
        for row in data["rows"]:
            label = row["fit"] if row["fit"] == "baseline" or cold is None else f"ours cold_name={cold}"
            newest_rows[label, row["channels"]] = row | {"series": label}
    if not any(label == "baseline" for label, _ in newest_rows):
        raise SystemExit(f"no many-channels-*.json with a baseline in {RESULTS}: run many_channels.py --baseline")
    return list(newest_rows.values()), [path.name for path in files]


def passed(row: dict) -> bool:
    """The row's fit met the convergence gate."""
    return (row.get("max_rhat", 9.0) <= GATE["max_rhat"] and row.get("min_ess_bulk", 0.0) >= GATE["min_ess_bulk"]
            and row.get("divergences", 0) == 0)


def series(rows: list[dict], key: str, x: str, y: str) -> tuple[list, list, list]:
    """x, y and gate of the rows whose variant / tool / series is ``key``, by x."""
    chosen = sorted((r for r in rows if key in (r.get("variant"), r.get("tool"), r.get("series")) and y in r),
                    key=lambda r: r[x])
    return [r[x] for r in chosen], [r[y] for r in chosen], [passed(r) for r in chosen]


def plot(ax, xs, ys, gates, label: str, color: str) -> None:
    ax.plot(xs, ys, color=color, label=label)
    for x, y, ok in zip(xs, ys, gates):
        ax.scatter([x], [y], color=color, facecolors=color if ok else "white", zorder=3, s=36)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scale_curves.png")
    args = parser.parse_args()
    scale = newest("scale-*.json")
    separate = newest("geos-*.json", holding="separate-in-process")
    channels, channel_files = channel_rows()
    pooled_rows = [r for r in separate["rows"] if r.get("variant") == "pooled-fixed-numpyro"]
    pooled_rows += [r for r in scale["rows"] if r.get("tool") != "meridian"
                    and r["geos"] not in {p["geos"] for p in pooled_rows}]
    geo_series = [
        ("ours, pooled (one model)", pooled_rows, "pooled-fixed-numpyro", "tab:blue"),
        ("ours, each geo alone (one process)", separate["rows"], "separate-in-process", "tab:green"),
        ("Google Meridian 2.1, defaults", scale["rows"], "meridian", "tab:red"),
    ]
    fig, (time_ax, memory_ax, channel_ax) = plt.subplots(1, 3, figsize=(15, 4.6))
    for label, rows, key, color in geo_series:
        plot(time_ax, *series(rows, key, "geos", "wall_seconds"), label, color)
        xs, ys, gates = series(rows, key, "geos", "peak_rss_mib")
        plot(memory_ax, xs, [y / 1024 for y in ys], gates, label, color)
    time_ax.set(title="Geos: wall time (156 weeks x 3 channels a geo)", xlabel="geos", ylabel="seconds, whole process",
                yscale="log")
    memory_ax.set(title="Geos: peak memory", xlabel="geos", ylabel="GiB resident")
    for label, key, color in [("ours (numpyro from the Laplace start)", "ours", "tab:blue"),
                              ("ours, sampler.cold_name: nutpie", "ours cold_name=nutpie", "tab:purple"),
                              ("PyMC-Marketing defaults + nutpie", "baseline", "tab:red")]:
        plot(channel_ax, *series(channels, key, "channels", "fit_seconds"), label, color)
    weeks = channels[0]["weeks"]
    channel_ax.set(title=f"Channels: fit time ({weeks} weeks, realistic data)", xlabel="channels",
                   ylabel="seconds, fit", yscale="log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax in (time_ax, channel_ax):  # seconds as numbers, not powers of ten
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    for ax in (time_ax, memory_ax, channel_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    channel_ax.set_xticks(sorted({row["channels"] for row in channels}))
    fig.text(0.5, 0.005, "filled: passed R-hat <= 1.01 and bulk ESS >= 400 (channels: and no divergence); hollow: did "
             f"not.\nbenchmarks/results/: {scale['file']}, {separate['file']}, {', '.join(channel_files)}",
             ha="center", fontsize=7.5)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
