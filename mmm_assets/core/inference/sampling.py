"""The sampling loop: NUTS on a built PyMC-Marketing model, sized to the ESS target, with warm / Laplace starts,
the backend's availability, JAX's persistent compilation cache and the convergence diagnostics.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import SamplerConfig
from mmm_assets.core.inference.adaptation import cold_nuts_kwargs, scale_free_adaptation
from mmm_assets.core.inference.compiling import quick_compile
from mmm_assets.core.inference.laplace import LaplaceFailedError, LaplaceStart
from mmm_assets.core.inference.progress import Reporter, sampler_progress, silent
from mmm_assets.core.inference.warmstart import PreviousPosterior, WarmStart, warm_start
from mmm_assets.core.variables import PREDICTED

#: Where JAX keeps compiled samplers between processes when JAX_COMPILATION_CACHE_DIR is not set (`make` sets it to
#: the project's git-ignored .cache/jax), like PyTensor's own ~/.pytensor.
JAX_CACHE_DEFAULT = Path.home() / ".cache" / "mmm_assets" / "jax"

#: Extra draws asked for on top of the estimate when a fit samples again to reach its ESS target.
ESS_MARGIN = 1.25
#: The target acceptance rate of a fit (cold, or from the same warm start) sampled again because it diverged: smaller
#: steps through the posterior's curved regions (Stan's advice for divergences: raise adapt_delta). Chosen on
#: config/realistic.yaml, where 0.95 still left 1-5 divergences on some seeds and 0.99 none (README "Validating on
#: real data").
DIVERGENCE_TARGET_ACCEPT = 0.99

@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics over the model's free parameters."""

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat_parameter: str

    def as_dict(self) -> dict[str, float]:
        """The diagnostics as plain numbers (for metadata, MLflow and gates)."""
        return {
            "divergences": float(self.divergences),
            "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk,
            "min_ess_tail": self.min_ess_tail,
        }

@dataclass
class FitResult:
    """A fitted model with how it was sampled and its convergence diagnostics."""
    mmm: MMM
    sampler: str
    wall_seconds: float
    diagnostics: Diagnostics
    draws: int  # per chain, after any top-up to reach the ESS target
    tune: int  # tuning steps per chain of the kept sample
    warm_start: str | None = None  # the posterior the kept sample was warm-started from, None when cold

    @property
    def chains(self) -> int:
        """Chains of the kept sample: ``sampler.chains``, more when a warm fit sampled more chains."""
        return int(self.mmm.idata.posterior.sizes["chain"])

def available_sampler(requested: str, report: Reporter = silent) -> str:
    """The requested NUTS backend when its package is installed, PyMC's own sampler otherwise (said to ``report``)."""
    needs = {"nutpie": ["nutpie"], "numpyro": ["numpyro", "jax"], "pymc": []}[requested]
    if all(importlib.util.find_spec(name) for name in needs):
        return requested
    report(f"sampler {requested!r} is not installed; using PyMC's own NUTS sampler instead")
    return "pymc"

def persistent_jax_cache() -> Path:
    """Switch on JAX's persistent compilation cache (every compiled function kept), so a later process loads the
    sampler instead of compiling it again; returns the folder. PyMC's JAX module is imported first: it sets XLA's
    host device count (one device per chain, for parallel chains) before JAX starts."""
    import jax
    import pymc.sampling.jax  # noqa: F401

    folder = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR") or JAX_CACHE_DEFAULT)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder

def diagnose(idata: xr.DataTree, parameters: list[str]) -> Diagnostics:
    """Divergences, worst R-hat and smallest bulk/tail ESS over ``parameters``."""
    table = az.summary(idata, var_names=parameters, kind="diagnostics", round_to="none")
    divergences = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    rhat = table["r_hat"].astype(float)
    return Diagnostics(
        divergences=divergences,
        max_rhat=float(rhat.max()),
        min_ess_bulk=float(table["ess_bulk"].astype(float).min()),
        min_ess_tail=float(table["ess_tail"].astype(float).min()),
        worst_rhat_parameter=str(rhat.idxmax()),
    )

def sampling_model(mmm: MMM):
    """The model PyMC-Marketing hands the sampler (``MMM._get_sampling_model``): its parameter order is the sampler's."""
    from pymc.model.transform.optimization import freeze_dims_and_data

    return freeze_dims_and_data(mmm.model)


def sample(  # noqa: C901 -- one escalation ladder (start, more chains, cold refit, more draws) read top to bottom
    mmm: MMM,
    X: pd.DataFrame,
    y: pd.Series,
    s: SamplerConfig,
    sampler: str,
    parameters: list[str],
    report: Reporter = silent,
    in_sample_predictive: bool = True,
    label: str = "fit",
    ess_target: float | None = None,
    rhat_target: float | None = None,
    warm: WarmStart | LaplaceStart | None = None,
    cold_sampler: str | None = None,
    divergences_max: int | None = None,
    var_names: list[str] | None = None,
) -> FitResult:
    """Sample a built model with ``sampler`` (progress to ``report``), add its in-sample posterior predictive in
    target units when asked, and diagnose ``parameters``. The posterior keeps ``var_names`` (its free variables
    among them), by default every variable.

    Draws are sized to the ESS target rather than fixed: when ``ess_target`` is given and the smallest bulk or tail
    ESS falls short of it, the model is sampled again with the draws that should reach it (times ESS_MARGIN), at
    most ``s.max_draws`` per chain; when the worst R-hat is above ``rhat_target``, with at least twice the draws.
    The first run's draws are dropped, not mixed with the second's. A ``warm`` start (numpyro) that falls short
    samples ``s.chains`` more chains of the same length instead, started from its own draws and moving with their
    covariance, and keeps them all: the compiled sampler is the same (a new draw count would compile it again),
    and its chains started from the posterior they are now part of. A warm fit that diverges is sampled again once
    from the same start with the target acceptance rate raised to DIVERGENCE_TARGET_ACCEPT (its chains so far
    dropped): a fixed mass matrix with too long a step is the usual cause, and this costs a warm fit, not a cold
    one. It is dropped when it diverges again, or still falls short when more chains would take it past
    ``s.chains * s.max_draws`` draws: the model is then sampled again cold (at the raised rate, when it was raised),
    with ``s.tune`` and ``s.draws``, by ``cold_sampler`` when given (``sampler.fallback``). With ``s.max_draws`` None
    no fit is sampled again for a gate it misses, a warm one included (a refit that only predicts: a cold refit of a
    50-geo pooled model would cost many times the warm start it replaced, and be kept whatever its gates); one that
    diverges still is.
    A cold fit with more than ``divergences_max`` divergences is sampled again once with the target acceptance rate
    raised to DIVERGENCE_TARGET_ACCEPT.
    A start from the Laplace approximation (:class:`LaplaceStart`) is a warm start in all of this, except that one of
    at least ``s.laplace_longer_from`` unconstrained parameters samples ``s.max_draws`` per chain at once and, short
    of a gate, again cold instead of with more chains (:func:`_long_chains`). When it finds no mode the model is
    sampled cold at once (by ``cold_sampler`` when given), adapting its mass matrix.
    """
    started = time.monotonic()
    draws, chains, attempt, accept = s.draws, s.chains, 0, s.target_accept
    kept: xr.DataTree | None = None  # the warm chains so far, when more are sampled
    kept_vars = {} if var_names is None else {"var_names": var_names}
    long = _long_chains(mmm, warm, s)
    if long:
        draws = s.max_draws
        report(f"{label}: {long} unconstrained parameters, from sampler.laplace_longer_from "
               f"{s.laplace_longer_from}: {s.chains} chains of {draws} draws from the Laplace approximation at once")
    if sampler == "numpyro":
        persistent_jax_cache()
    while True:
        tune = s.warm_tune if warm else s.tune
        # numpyro samples with JAX whatever PyTensor's mode is; what PyMC compiles around it (the initial point, and
        # the deterministics when they were recomputed after sampling) runs once: 15.3 -> 8.3 s fit on an empty
        # PyTensor cache
        around = quick_compile() if sampler == "numpyro" else contextlib.nullcontext()
        if warm:
            placed, nuts = warm.starting_points(), {"nuts_sampler_kwargs": warm.nuts_kwargs()}
        elif sampler == "numpyro" and s.dense_mass:
            placed, nuts = scale_free_adaptation(), {"nuts_sampler_kwargs": cold_nuts_kwargs()}
        else:
            placed, nuts = contextlib.nullcontext(), {}
        # numpyro: the deterministics (contributions, mu, ...) come out of PyMC's vectorised JAX post-processing of
        # the draws, not PyMC-Marketing's recompute afterwards, which evaluates them one draw at a time in Python
        # (1,400 calls): the same values (to 2e-16); cold reference fit on warm caches 6.4 -> 4.8-5.1 s
        mmm._recompute_deterministics = sampler != "numpyro" and var_names is None
        try:
            with sampler_progress(sampler, report, s.chains * (tune + draws)) as extra, around, placed:
                mmm.fit(
                    X,
                    y,
                    nuts_sampler=sampler,
                    draws=draws,
                    tune=tune,
                    chains=s.chains,
                    target_accept=accept,
                    random_seed=s.seed + attempt,
                    progressbar=False,
                    **nuts,
                    **extra,
                    **kept_vars,
                )
        except LaplaceFailedError as failed:
            warm = None
            sampler = available_sampler(cold_sampler, report) if cold_sampler else sampler
            report(f"{label}: no Laplace start ({failed}); sampling cold with {sampler}, adapting the mass matrix "
                   f"over {s.tune} tuning steps")
            continue
        if sampler == "numpyro":  # PyMC leaves numpyro's draws as JAX arrays: numpy, as in a model loaded from disk
            mmm.idata = mmm.idata.map_over_datasets(lambda group: group.as_numpy())
        if kept is not None:
            mmm.idata = _with_chains_of(kept, mmm.idata)
        diagnostics = diagnose(mmm.idata, parameters)
        ess = min(diagnostics.min_ess_bulk, diagnostics.min_ess_tail)
        reasons, wanted = [], 0.0
        if ess_target is not None and ess < ess_target:
            reasons.append(f"smallest ESS {ess:.0f} < {ess_target:.0f}")
            wanted = draws * ess_target / max(ess, 1.0) * ESS_MARGIN
        if rhat_target is not None and diagnostics.max_rhat > rhat_target:
            reasons.append(f"max R-hat {diagnostics.max_rhat:.4f} > {rhat_target}")
            wanted = max(wanted, 2 * draws)
        if warm:
            chains = mmm.idata.posterior.sizes["chain"]
            room = not long and s.max_draws is not None and (chains + s.chains) * draws <= s.chains * s.max_draws
            if diagnostics.divergences and accept < DIVERGENCE_TARGET_ACCEPT:
                accept, attempt, kept = DIVERGENCE_TARGET_ACCEPT, attempt + 1, None
                report(f"{label}: started from {warm.label}: {diagnostics.divergences} divergences after "
                       f"{time.monotonic() - started:.1f} s; the same start again with target_accept {accept} "
                       f"(smaller steps), {s.chains} chains")
                continue
            if diagnostics.divergences or (reasons and not room and s.max_draws is not None):
                reasons += [f"{diagnostics.divergences} divergences"] if diagnostics.divergences else []
                start = warm.label
                draws, chains, warm, kept, attempt = s.draws, s.chains, None, None, attempt + 1
                sampler = available_sampler(cold_sampler, report) if cold_sampler else sampler
                report(f"{label}: started from {start}: {' and '.join(reasons)} after "
                       f"{time.monotonic() - started:.1f} s; "
                       f"sampling again cold with {sampler} ({s.tune} tune + {draws} draws)")
                continue
            if not reasons or s.max_draws is None:  # null: never sampled again for a gate, warm or cold
                break
            kept, attempt = mmm.idata, attempt + 1
            warm = _continued(mmm, warm, s.chains, s.seed + attempt)
            report(f"{label}: {' and '.join(reasons)} after {time.monotonic() - started:.1f} s; {s.chains} more "
                   f"warm chains of {draws} draws, started from these {chains} chains' draws and covariance")
            continue
        diverged = divergences_max is not None and diagnostics.divergences > divergences_max
        if diverged and accept < DIVERGENCE_TARGET_ACCEPT:
            accept, attempt = DIVERGENCE_TARGET_ACCEPT, attempt + 1
            if reasons and s.max_draws is not None:
                draws = min(s.max_draws, int(np.ceil(wanted)))
            report(f"{label}: {diagnostics.divergences} divergences after {time.monotonic() - started:.1f} s; sampling "
                   f"again with target_accept {accept} (smaller steps), {s.tune} tune + {draws} draws")
            continue
        if not reasons or s.max_draws is None or draws >= s.max_draws:
            break
        draws, attempt = min(s.max_draws, int(np.ceil(wanted))), attempt + 1
        report(f"{label}: {' and '.join(reasons)} after {time.monotonic() - started:.1f} s; "
               f"sampling again with {draws} draws per chain")
    if in_sample_predictive:
        with quick_compile():
            mmm.sample_posterior_predictive(
                X, var_names=[PREDICTED], extend_idata=True, combined=True, progressbar=False, random_seed=s.seed
            )
    wall = time.monotonic() - started
    report(
        f"{label} done in {wall:.1f} s ({chains} x {draws} draws{f', from {warm.label}' if warm else ''}): "
        f"divergences {diagnostics.divergences}, max R-hat {diagnostics.max_rhat:.4f} "
        f"({diagnostics.worst_rhat_parameter}), min bulk ESS {diagnostics.min_ess_bulk:.0f}"
    )
    return FitResult(mmm=mmm, sampler=sampler, wall_seconds=wall, diagnostics=diagnostics, draws=draws, tune=tune,
                     warm_start=warm.label if warm else None)

def _long_chains(mmm: MMM, warm: WarmStart | LaplaceStart | None, s: SamplerConfig) -> int:
    """The unconstrained parameters of a Laplace start that samples ``s.max_draws`` per chain at once (at least
    ``s.laplace_longer_from`` of them), 0 for any other fit. There the approximation's covariance misses a few slowly
    mixing directions (a tail it makes too narrow): new pairs of 500-draw chains, each with its own burn-in, may
    wander into one for most of their draws, so R-hat over the chains got worse with every pair, and 2 x 1,000 draws
    still missed, while 2 x 2,000 passed at 20 and 50 geos x 10 channels (docs/performance.md)."""
    if not isinstance(warm, LaplaceStart) or s.laplace_longer_from is None or s.max_draws is None:
        return 0
    found = unconstrained_parameters(mmm)
    return found if found >= s.laplace_longer_from else 0


def unconstrained_parameters(mmm: MMM) -> int:
    """How many unconstrained parameters the sampler moves (the size of the sampling model's initial point)."""
    return sum(int(np.size(v)) for v in sampling_model(mmm).initial_point().values())


def _with_chains_of(first: xr.DataTree, second: xr.DataTree) -> xr.DataTree:
    """``second`` (a fit of the same model and data) with the chains of ``first`` before its own."""
    merged = second.copy()
    for group in ("posterior", "sample_stats"):
        before, after = first[group].to_dataset(), second[group].to_dataset()
        after = after.assign_coords(chain=after["chain"] + before.sizes["chain"])
        merged[group] = xr.DataTree(xr.concat([before, after], dim="chain"))
    return merged

def _continued(mmm: MMM, warm: WarmStart | LaplaceStart, chains: int, seed: int) -> WarmStart | LaplaceStart:
    """The warm start of more chains from a warm fit's own draws (still labelled by the posterior it came from);
    ``warm`` itself when the fit's draws do not make one."""
    own = PreviousPosterior(warm.label, mmm.idata.posterior.to_dataset())
    continued, _ = warm_start(sampling_model(mmm), own, chains, seed)
    return continued or warm
