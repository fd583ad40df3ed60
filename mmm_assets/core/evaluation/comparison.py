"""Comparing model specifications (``model.candidates``): each fitted, gated and scored by PSIS-LOO; one chosen.

For each candidate (the scenario's ``model`` with the candidate's settings laid over it): a fit with the project's
own machinery (:func:`mmm_assets.core.modelling.fitting.fit`: the Laplace start, the compiled samplers, the ESS
top-up), the holdout forecast and every gate of the validation profile, and the expected log predictive density of
each week left out in turn, estimated by Pareto-smoothed importance sampling (PSIS-LOO; Vehtari, Gelman & Gabry
2017, ArviZ's ``loo``): ``elpd_loo`` with its standard error, the effective number of parameters ``p_loo`` and the
Pareto k diagnostics (a k above ``good_k``, 0.7 for a thousand or more draws, marks a week whose estimate is not
reliable). ELPD is on the KPI's own scale (the model's likelihood of the scaled KPI minus n log target_scale), so
it is comparable whatever each candidate's scales.

Selection (``model.select: elpd``): among the candidates that pass every gate, the best ELPD; a candidate within 2
standard errors of the difference (the SE of the pointwise differences, as ``az.compare`` computes it) with fewer
parameters wins the tie: the data cannot tell them apart, so the simpler one. When no candidate passes, the
scenario's ``model`` as it is, whose own gates then say why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from mmm_assets.core.config import MMMConfig
from mmm_assets.core.evaluation.validation import holdout, validate
from mmm_assets.core.inference.sampling import FitResult
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.modelling.forecast import pointwise_log_likelihood
from mmm_assets.core.modelling.roles import parameter_counts
from mmm_assets.core.records import ModelChoice

#: Differences within this many standard errors are ties (then the simpler specification is chosen).
TIE_SE = 2.0
COLUMNS = [
    "candidate", "adstock", "saturation", "parameters", "elpd_loo", "elpd_se", "p_loo", "elpd_diff", "diff_se",
    "max_pareto_k", "high_k_weeks", "holdout_mape_pct", "holdout_mase", "in_sample_r2", "max_rhat", "divergences",
    "passed_gates", "failed_gates", "fit_seconds", "selected",
]


@dataclass(frozen=True)
class Comparison:
    """The choice, and the chosen candidate's fit (None when no candidate passes): the graph's fit reuses it."""

    choice: ModelChoice
    fit: FitResult | None


def loo(mmm):
    """PSIS-LOO of a fitted model on the KPI's own scale (ArviZ's ``loo`` with pointwise values)."""
    target_scale = float(np.asarray(mmm.idata.constant_data["target_scale"]).reshape(-1)[0])
    log_lik = pointwise_log_likelihood(mmm) - np.log(target_scale)
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"y_sigma": mmm.idata.posterior["y_sigma"]}),
        "log_likelihood": xr.Dataset({"y": log_lik}),
    })
    return az.loo(tree, pointwise=True)


def _row(name: str, cfg: MMMConfig, seconds: float, report, scores) -> dict:
    high = int((scores.pareto_k > scores.good_k).sum())
    return {
        "candidate": name, "adstock": cfg.model.adstock.family, "saturation": cfg.model.saturation.family,
        "parameters": sum(parameter_counts(cfg).values()), "elpd_loo": float(scores.elpd),
        "elpd_se": float(scores.se), "p_loo": float(scores.p), "max_pareto_k": float(scores.pareto_k.max()),
        "high_k_weeks": high, "holdout_mape_pct": report.metrics.get("holdout_mape_pct"),
        "holdout_mase": report.metrics.get("holdout_mase"), "in_sample_r2": report.metrics["in_sample_r2"],
        "max_rhat": report.metrics["max_rhat"], "divergences": report.metrics["divergences"],
        "passed_gates": not report.failed_gates(), "failed_gates": ", ".join(report.failed_gates()),
        "fit_seconds": seconds,
    }


def with_differences(table: pd.DataFrame, pointwise: dict[str, np.ndarray]) -> pd.DataFrame:
    """``elpd_diff`` and ``diff_se`` (the SE of the pointwise differences) of every candidate against the best ELPD
    among those that pass every gate (among all when none does)."""
    passing = table[table["passed_gates"]]
    pool = passing if not passing.empty else table
    best = pool.loc[pool["elpd_loo"].idxmax(), "candidate"]
    out = table.copy()
    differences = {name: pointwise[name] - pointwise[best] for name in out["candidate"]}
    out["elpd_diff"] = [float(differences[n].sum()) for n in out["candidate"]]
    out["diff_se"] = [float(np.sqrt(len(d) * np.var(d))) for d in (differences[n] for n in out["candidate"])]
    return out


def select(table: pd.DataFrame) -> tuple[str | None, str]:
    """The chosen candidate (None: the scenario's model as it is) and why, by ``model.select: elpd``; ``table`` has
    :func:`with_differences`' columns."""
    passing = table[table["passed_gates"]]
    if passing.empty:
        return None, "no candidate passes every gate: the scenario's model as it is (its own gates say why)"
    best = passing.loc[passing["elpd_loo"].idxmax()]
    ties = passing[-passing["elpd_diff"] <= TIE_SE * passing["diff_se"]]
    simplest = ties.sort_values(["parameters", "elpd_loo"], ascending=[True, False]).iloc[0]
    if simplest["candidate"] != best["candidate"]:
        return simplest["candidate"], (
            f"{simplest['candidate']} ({simplest['parameters']} parameters) is within {TIE_SE:g} SE of the best ELPD "
            f"({best['candidate']}, {best['parameters']} parameters, {-simplest['elpd_diff']:.1f} higher, SE "
            f"{simplest['diff_se']:.1f}): a tie, so the simpler one"
        )
    others = passing[passing["candidate"] != best["candidate"]]
    if others.empty:
        failed = table[~table["passed_gates"]]
        why = "; ".join(
            f"{r.candidate} failed {r.failed_gates} (ELPD {r.elpd_diff:+.1f}, SE {r.diff_se:.1f})"
            for r in failed.itertuples()
        )
        return best["candidate"], f"{best['candidate']} is the only candidate that passes every gate ({why})"
    runner = others.loc[others["elpd_loo"].idxmax()]
    return best["candidate"], (
        f"{best['candidate']} has the best ELPD among the candidates that pass every gate: "
        f"{-runner['elpd_diff']:.1f} above {runner['candidate']} (SE of the difference {runner['diff_se']:.1f})"
    )


def compare_specifications(cfg: MMMConfig, features: pd.DataFrame, truth, report) -> Comparison:
    """Fit, gate and score every ``model.candidates`` specification and choose one (see the module docstring).

    ``truth``: the generator's truth (synthetic data) for the recovery gates, or None; ``report``: progress lines.
    """
    rows, pointwise, fits = [], {}, {}
    for name in cfg.model.candidates:
        candidate = cfg.with_candidate(name)
        report(f"candidate {name}: {candidate.model.adstock.family} adstock + {candidate.model.saturation.family} "
               "saturation")
        start = time.perf_counter()
        result = fit(candidate, features, report=report)
        seconds = time.perf_counter() - start
        fits[name] = result
        held = holdout(candidate, features, result.mmm, report)
        verdict = validate(candidate, features, result.mmm, result.diagnostics.as_dict(), held, truth, None)
        scores = loo(result.mmm)
        pointwise[name] = np.asarray(scores.elpd_i).reshape(-1)
        rows.append(_row(name, candidate, seconds, verdict, scores))
        high = rows[-1]["high_k_weeks"]
        report(f"candidate {name}: ELPD {scores.elpd:.1f} ± {scores.se:.1f}"
               + (f" ({high} weeks with Pareto k > {scores.good_k:.2f}: their leave-one-out terms are rough)"
                  if high else "")
               + f", gates {'passed' if not verdict.failed_gates() else 'failed: ' + ', '.join(verdict.failed_gates())}")
    table = with_differences(pd.DataFrame(rows), pointwise)
    selected, reason = select(table)
    table["selected"] = table["candidate"] == selected
    choice = ModelChoice(selected=selected, reason=reason, table=table[COLUMNS])
    return Comparison(choice, fits.get(selected) if selected else None)
