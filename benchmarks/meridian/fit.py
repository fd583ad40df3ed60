"""Fit Google Meridian 2.1 on a long-format geo CSV and write timings, memory and convergence as JSON.

Runs inside benchmarks/.meridian-venv (`make meridian-venv`), never the project's venv: it must not import mmm_assets.

Input CSV (one row per geo x week):
  date        ISO date of the week (yyyy-mm-dd), the same weeks for every geo
  geo         geo / market name
  kpi         revenue (currency units); the model is fitted with kpi_type="revenue"
  population  optional, constant per geo; 1.0 for every geo when the column is absent
  <channel>   spend of each channel named by --channels (currency units); used as both media and media spend

  python fit.py --data data.csv --channels tv,search,social --chains 2 --adapt 500 --burnin 500 --draws 500 --out r.json

Smoke test without our generator (Meridian's own simulated geo data, the first N geos, written to --data):
  python fit.py --from-meridian-sample 5 --data /tmp/m5.csv --chains 2 --adapt 200 --burnin 100 --draws 200 --out r.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

T_PROCESS = time.perf_counter()

# Known-harmless warnings: revenue_per_kpi is ignored for a revenue KPI (we give none); arviz does not know the
# "trace" group Meridian adds to its InferenceData.
warnings.filterwarnings("ignore", message=r"Revenue from the `kpi` data is used")
warnings.filterwarnings("ignore", message=r"trace group is not defined")

# Meridian imports TensorFlow even on its default JAX backend: keep its C++ start-up chatter out of the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Meridian's simulated geo CSV as it is laid out in the google/meridian repository (not in the 2.1.0 wheel or sdist).
PACKAGED_SAMPLE = ("data", "simulated_data", "csv", "geo_media.csv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="long-format CSV to fit (with --from-meridian-sample: where to write it)")
    p.add_argument("--channels", help="comma-separated spend columns, e.g. tv,search,social (default with "
                   "--from-meridian-sample: all of the sample's channels)")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--adapt", type=int, default=500, help="n_adapt per chain")
    p.add_argument("--burnin", type=int, default=500, help="n_burnin per chain (after adaptation, discarded)")
    p.add_argument("--draws", type=int, default=500, help="n_keep per chain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="JSON result file")
    p.add_argument("--knots", type=int, default=None,
                   help="ModelSpec knots (time-effect knots); default Meridian's: one per week in a geo model")
    p.add_argument("--max-lag", type=int, default=8, help="ModelSpec max_lag (adstock window), Meridian's default 8")
    p.add_argument("--max-tree-depth", type=int, default=10, help="NUTS max tree depth (Meridian's default 10)")
    p.add_argument("--jax-cache-dir", type=Path, default=None,
                   help="JAX persistent compilation cache (default: none, unless JAX_COMPILATION_CACHE_DIR is set)")
    g = p.add_argument_group("smoke-test data from Meridian itself")
    g.add_argument("--from-meridian-sample", type=int, metavar="N_GEOS", default=None,
                   help="convert the first N_GEOS geos of Meridian's simulated geo data to the long format, write "
                        "it to --data (or next to --out) and fit it")
    g.add_argument("--meridian-csv", type=Path, default=None,
                   help="Meridian's simulated geo CSV (geo_media.csv of the google/meridian repository, "
                        "meridian/data/simulated_data/csv/); default: the installed package's copy if it ships one, "
                        "else data generated with meridian.data.test_utils.random_dataset")
    g.add_argument("--sample-weeks", type=int, default=104, help="weeks of the random_dataset fallback")
    g.add_argument("--sample-channels", type=int, default=3, help="channels of the random_dataset fallback")
    a = p.parse_args(argv)
    if a.from_meridian_sample is None and (a.data is None or not a.channels):
        p.error("--data and --channels are required (or use --from-meridian-sample N_GEOS)")
    return a


# --------------------------------------------------------------------------------------------------------------------
# Meridian's own simulated data -> our long format


def _meridian_csv_to_long(path: Path, n_geos: int) -> tuple["pd.DataFrame", str]:  # noqa: F821
    """Meridian's simulated geo CSV (geo, time, ChannelN_spend, conversions, revenue_per_conversion, population, ...)."""
    import pandas as pd

    src = pd.read_csv(path)
    geos = list(dict.fromkeys(src["geo"]))[:n_geos]
    src = src[src["geo"].isin(geos)]
    spend_cols = [c for c in src.columns if c.endswith("_spend")]
    if "revenue" in src.columns:
        kpi = src["revenue"]
    else:
        kpi = src["conversions"] * src.get("revenue_per_conversion", 1.0)
    out = pd.DataFrame({"date": src["time"], "geo": src["geo"], "kpi": kpi, "population": src["population"]})
    for c in spend_cols:
        out[c.removesuffix("_spend")] = src[c]
    return out.reset_index(drop=True), f"meridian simulated csv {path}"


def _meridian_random_to_long(n_geos: int, n_weeks: int, n_channels: int, seed: int) -> tuple["pd.DataFrame", str]:  # noqa: F821
    """meridian.data.test_utils.random_dataset: its KPI is built from the media values, so those become our spend."""
    from meridian.data import test_utils

    ds = test_utils.random_dataset(n_geos=n_geos, n_times=n_weeks, n_media_times=n_weeks,
                                   n_media_channels=n_channels, seed=seed)
    media = ds["media"].rename(media_time="time")
    out = (ds["kpi"] * ds["revenue_per_kpi"]).to_dataframe("kpi").reset_index()
    out["population"] = out["geo"].map(ds["population"].to_series())
    for ch in ds["media_channel"].values:
        out = out.merge(media.sel(media_channel=ch).drop_vars("media_channel").to_dataframe(str(ch)).reset_index(),
                        on=["geo", "time"])
    out = out.rename(columns={"time": "date"})[["date", "geo", "kpi", "population",
                                                *map(str, ds["media_channel"].values)]]
    return out, f"meridian.data.test_utils.random_dataset(n_geos={n_geos}, n_times={n_weeks}, " \
                f"n_media_channels={n_channels}, seed={seed}); spend = its media values"


def write_meridian_sample(a: argparse.Namespace) -> tuple[Path, list[str], str]:
    import meridian

    csv = a.meridian_csv
    if csv is None:
        shipped = Path(meridian.__file__).parent.joinpath(*PACKAGED_SAMPLE)
        csv = shipped if shipped.exists() else None
    if csv is not None:
        df, source = _meridian_csv_to_long(csv, a.from_meridian_sample)
    else:
        df, source = _meridian_random_to_long(a.from_meridian_sample, a.sample_weeks, a.sample_channels, a.seed)
    channels = [c for c in df.columns if c not in ("date", "geo", "kpi", "population")]
    if a.channels:
        channels = [c.strip() for c in a.channels.split(",") if c.strip()]
    path = a.data or a.out.with_suffix(".data.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path, channels, source


# --------------------------------------------------------------------------------------------------------------------
# Long format -> InputData


def build_input_data(path: Path, channels: list[str]):
    import pandas as pd
    from meridian.data.data_frame_input_data_builder import DataFrameInputDataBuilder

    df = pd.read_csv(path)
    missing = [c for c in ("date", "geo", "kpi", *channels) if c not in df.columns]
    if missing:
        raise SystemExit(f"error: {path} has no column(s) {missing}; it has {list(df.columns)}")
    df["date"] = pd.to_datetime(df["date"]).dt.strftime("%Y-%m-%d")
    df["geo"] = df["geo"].astype(str)
    if "population" not in df.columns:
        df["population"] = 1.0
    df = df.sort_values(["geo", "date"]).reset_index(drop=True)
    # Revenue KPI: revenue_per_kpi is 1 by construction, and media spend doubles as the media execution values
    # (the builder accepts the same columns for both).
    builder = (DataFrameInputDataBuilder(kpi_type="revenue")
               .with_kpi(df, kpi_col="kpi", time_col="date", geo_col="geo")
               .with_population(df, population_col="population", geo_col="geo")
               .with_media(df, media_cols=channels, media_spend_cols=channels, media_channels=channels,
                           time_col="date", geo_col="geo"))
    return builder.build(), df


# --------------------------------------------------------------------------------------------------------------------
# Diagnostics


MEDIA_SUFFIXES = ("_m", "_gm")  # Meridian's paid-media parameters: roi_m, beta_m, beta_gm, alpha_m, ec_m, eta_m, ...


def convergence(mmm) -> dict:
    """Rank-normalised split R-hat and bulk/tail ESS (arviz, as the project's own `diagnose` computes them) over the
    model's parameters: every posterior variable except those whose prior is a fixed constant (Meridian's own
    rhat_summary skips the same ones, e.g. slope_m = 1). Derived ones are included (mu_t mirrors knot_values, beta_m
    follows roi_m under the default ROI prior). Also Meridian's own R-hat summary (classic Gelman-Rubin) and the
    divergences / leapfrog steps of sample_stats."""
    import arviz as az
    import numpy as np

    idata = mmm.inference_data
    post = idata.posterior
    prior_bc = mmm.model_context.prior_broadcast

    def fixed(name: str) -> bool:
        name = "tau_g_excl_baseline" if name == "tau_g" else name
        try:
            return bool(prior_bc.has_deterministic_param(name))
        except Exception:  # noqa: BLE001 - a name the prior does not know: keep it
            return False

    params = [v for v in post.data_vars if not fixed(v)]
    with warnings.catch_warnings():  # the baseline geo's tau_g is 0 in every draw: its R-hat is NaN, skipped below
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(post[params], method="rank")
        ess_bulk = az.ess(post[params], method="bulk")
        ess_tail = az.ess(post[params], method="tail")

    def finite(x, fn):
        x = np.asarray(x, dtype=float)
        return float(fn(x[np.isfinite(x)])) if np.isfinite(x).any() else None

    per_param = {v: {"n": int(np.asarray(rhat[v].values).size),
                     "max_rhat": finite(rhat[v].values, np.max),
                     "min_ess_bulk": finite(ess_bulk[v].values, np.min),
                     "min_ess_tail": finite(ess_tail[v].values, np.min)} for v in params}

    def worst(names):
        r = {k: per_param[k]["max_rhat"] for k in names if per_param[k]["max_rhat"] is not None}
        b = {k: per_param[k]["min_ess_bulk"] for k in names if per_param[k]["min_ess_bulk"] is not None}
        t = {k: per_param[k]["min_ess_tail"] for k in names if per_param[k]["min_ess_tail"] is not None}
        return {"max_rhat": max(r.values()) if r else None, "min_ess_bulk": min(b.values()) if b else None,
                "min_ess_tail": min(t.values()) if t else None,
                "worst_rhat_param": max(r, key=r.get) if r else None,
                "worst_ess_param": min(b, key=b.get) if b else None}

    out = worst(params)
    media = [v for v in params if v.endswith(MEDIA_SUFFIXES)]
    out["media"] = {"params": media, **worst(media)}
    out["n_parameters"] = len(params)
    out["n_scalar_parameters"] = sum(p["n"] for p in per_param.values())
    out["per_param"] = per_param
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        out["divergences"] = int(np.asarray(stats["diverging"].values).sum())
    if stats is not None and "n_steps" in stats:
        n_steps = np.asarray(stats["n_steps"].values, dtype=float)
        out["mean_leapfrog_steps_per_draw"] = float(n_steps.mean())
        out["max_leapfrog_steps_per_draw"] = int(n_steps.max())
        out["total_leapfrog_steps_kept"] = int(n_steps.sum())
    if stats is not None and "step_size" in stats:
        out["step_size_per_chain"] = [float(s) for s in np.asarray(stats["step_size"].values)[:, -1]]
    try:  # Meridian's own summary (classic potential scale reduction, not rank-normalised)
        from meridian.analysis import analyzer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            summ = analyzer.Analyzer(model_context=mmm.model_context, inference_data=idata).rhat_summary()
        col = next(c for c in summ.columns if str(c).replace("_", "") == "maxrhat")  # max_r_hat / max_rhat
        out["meridian_rhat_summary_max"] = float(summ[col].max())
    except Exception as e:  # noqa: BLE001 - informational only
        out["meridian_rhat_summary_error"] = f"{type(e).__name__}: {e}"
    return out


def log(msg: str) -> None:
    print(f"[fit.py {time.perf_counter() - T_PROCESS:7.1f}s rss {peak_rss_mb():.0f} MB] {msg}", file=sys.stderr,
          flush=True)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    t = time.perf_counter()
    c = cpu_s()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz  # noqa: F401
        import jax
        import meridian
        from meridian import backend as mbackend
        from meridian.model import model as mmodel
        from meridian.model import spec as mspec
    if a.jax_cache_dir is not None:
        a.jax_cache_dir.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(a.jax_cache_dir))
    timings["import_s"] = time.perf_counter() - t
    cpu["import_s"] = cpu_s() - c
    log(f"imported meridian {meridian.__version__} (backend {mbackend.config.get_backend().value})")

    t = time.perf_counter()
    c = cpu_s()
    sample_source = None
    data_path, channels = a.data, [c.strip() for c in (a.channels or "").split(",") if c.strip()]
    if a.from_meridian_sample is not None:
        data_path, channels, sample_source = write_meridian_sample(a)
    input_data, df = build_input_data(data_path, channels)
    model_spec = mspec.ModelSpec(max_lag=a.max_lag, knots=a.knots)
    mmm = mmodel.Meridian(input_data=input_data, model_spec=model_spec)
    timings["data_build_s"] = time.perf_counter() - t
    cpu["data_build_s"] = cpu_s() - c
    log(f"built InputData + Meridian from {data_path}: {mmm.n_geos} geos x {mmm.n_times} weeks x "
        f"{len(channels)} channels")

    # Meridian runs its critical EDA checks as a guardrail inside sample_posterior (more than once); one pass here,
    # timed on its own, so that part of the sampling time is visible.
    t = time.perf_counter()
    outcomes = mmm.eda_outcomes
    eda_failures = [finding.explanation for f in dataclasses.fields(outcomes)
                    for finding in getattr(outcomes, f.name).findings if finding.severity.name == "FAIL"]
    timings["eda_check_once_s"] = time.perf_counter() - t
    log(f"EDA critical checks: {len(eda_failures)} FAIL finding(s); sampling {a.chains} chains x "
        f"({a.adapt} adapt + {a.burnin} burn-in + {a.draws} kept) ...")

    t = time.perf_counter()
    c = cpu_s()
    error = None
    try:
        mmm.sample_posterior(n_chains=a.chains, n_adapt=a.adapt, n_burnin=a.burnin, n_keep=a.draws, seed=a.seed,
                             max_tree_depth=a.max_tree_depth)
    except Exception as e:  # noqa: BLE001 - recorded in the JSON (EDA guardrail, out of memory, ...), exit 1
        error = f"{type(e).__name__}: {e}"
    timings["sampling_s"] = time.perf_counter() - t
    cpu["sampling_s"] = cpu_s() - c
    log(f"sampling done ({timings['sampling_s']:.1f} s wall, {cpu['sampling_s']:.1f} s CPU)"
        + (f": {error}" if error else ""))

    t = time.perf_counter()
    c = cpu_s()
    diag = convergence(mmm) if error is None else {"per_param": {}}
    timings["diagnostics_s"] = time.perf_counter() - t
    cpu["diagnostics_s"] = cpu_s() - c
    timings["total_process_s"] = time.perf_counter() - T_PROCESS
    cpu["total_process_s"] = cpu_s()

    result = {
        "tool": "google-meridian",
        "meridian_version": meridian.__version__,
        "backend": mbackend.config.get_backend().value,
        "jax_version": jax.__version__,
        "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "data": str(data_path),
        "sample_source": sample_source,
        "n_geos": int(input_data.kpi.sizes["geo"]),
        "n_weeks": int(input_data.kpi.sizes["time"]),
        "n_channels": len(channels),
        "channels": channels,
        "population_given": bool(df["population"].ne(1.0).any()),
        "model_spec": {"kpi_type": "revenue", "max_lag": a.max_lag, "knots": a.knots,
                       "media": "spend used as media", "adstock": "geometric", "saturation": "hill",
                       "paid_media_prior_type": "Meridian default (roi)"},
        "sampler": {"chains": a.chains, "n_adapt": a.adapt, "n_burnin": a.burnin, "n_keep": a.draws,
                    "seed": a.seed, "max_tree_depth": a.max_tree_depth},
        "wall_s": {k: round(v, 2) for k, v in timings.items()},
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "peak_rss_mb": peak_rss_mb(),
        "eda_fail_findings": eda_failures,
        "error": error,
        **{k: v for k, v in diag.items() if k != "per_param"},
        "per_param": diag["per_param"],
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    short = {k: result[k] for k in ("n_geos", "n_weeks", "n_channels", "wall_s", "peak_rss_mb", "max_rhat",
                                    "min_ess_bulk", "min_ess_tail", "divergences", "error") if k in result}
    print(json.dumps(short))
    if error:
        print(f"error: {error}", file=sys.stderr)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
