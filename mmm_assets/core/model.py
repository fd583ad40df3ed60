"""Building, fitting, persisting and diagnosing the PyMC-Marketing MMM.

The model is PyMC-Marketing's ``MMM`` with normalised ``GeometricAdstock`` and ``LogisticSaturation`` on the media
(paid and owned channels), yearly seasonality when configured, and :class:`mmm_assets.core.priors.RoleTerms` for
every non-media variable (competitors, controls, calendar events, the trend; see :mod:`mmm_assets.core.roles`).
Original-scale variables are registered before fitting so predictions and contributions come back in target units,
and the in-sample posterior predictive is computed once here and saved with the posterior so no later step has to
repeat it. Before sampling, the scenario's ROI priors (:mod:`mmm_assets.core.priors`) and lift tests
(:mod:`mmm_assets.core.calibration`) are added to the built model.

Scales: by default PyMC-Marketing divides the target and each channel by its maximum over the fitted weeks, so one
more week can move every parameter's meaning. :class:`ModelScales` fixes them instead: given to :func:`build_mmm` /
:func:`fit` (e.g. the previous champion's, read with :func:`fitted_scales`) or set in ``model.scaling``; a channel
or term without a fixed scale still takes its maximum from the data.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM, GeometricAdstock, LogisticSaturation
from pymc_marketing.mmm.scaling import DataDerivedScaling, FixedScaling, Scaling

from mmm_assets.core.adaptation import cold_nuts_kwargs, scale_free_adaptation
from mmm_assets.core.compiling import quick_compile
from mmm_assets.core.config import DATE_COLUMN, TARGET_COLUMN, MMMConfig, SamplerConfig
from mmm_assets.core.laplace import LaplaceFailed, LaplaceStart
from mmm_assets.core.priors import NoControlCoefficients, RoleTerms, add_roi_priors, role_terms
from mmm_assets.core.roles import term_specs
from mmm_assets.core.storage import MODELS_ROLE, ensure_free_space, no_room_is_disk_space_error
from mmm_assets.core.warmstart import PreviousPosterior, WarmStart, warm_start

Reporter = Callable[[str], None]

#: Posterior-predictive variable in target units (registered before the fit).
PREDICTED = "y_original_scale"
CONTRIBUTIONS = "channel_contribution_original_scale"
#: Probability mass of every interval the project reports.
HDI_PROB = 0.94
#: Seconds between two progress lines in the run log.
PROGRESS_EVERY_S = 5.0
#: Where JAX keeps compiled samplers between processes when JAX_COMPILATION_CACHE_DIR is not set (`make` sets it to
#: the project's git-ignored .cache/jax), like PyTensor's own ~/.pytensor.
JAX_CACHE_DEFAULT = Path.home() / ".cache" / "mmm_assets" / "jax"
#: netCDF writer of the saved models: h5netcdf (with h5py) is the one the pinned stack installs (netCDF4 is not).
NETCDF_ENGINE = "h5netcdf"
#: Suffix of PyMC-Marketing's original-scale deterministics whose base names a saved model lists (see
#: :func:`_prepare_for_save`).
ORIGINAL_SCALE_SUFFIX = "_original_scale"
#: Extra draws asked for on top of the estimate when a fit samples again to reach its ESS target.
ESS_MARGIN = 1.25


def _silent(_: str) -> None:
    """A reporter that drops its messages."""


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics over the model's free parameters."""

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat_parameter: str

    def as_dict(self) -> dict[str, float]:
        return {
            "divergences": float(self.divergences),
            "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk,
            "min_ess_tail": self.min_ess_tail,
        }


@dataclass
class FitResult:
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


def split_xy(features: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Model inputs (date, channels, controls) and the target series."""
    return features.drop(columns=[TARGET_COLUMN]), features[TARGET_COLUMN].rename(TARGET_COLUMN)


@dataclass(frozen=True)
class ModelScales:
    """What a model divides its data by. The same scales make consecutive refreshes' parameters comparable.

    ``target`` (target units) and ``channels`` (column units, per channel) are PyMC-Marketing's scaling; ``controls``
    and ``centers`` those of the non-media terms (:class:`mmm_assets.core.priors.RoleTerms`). None / a missing name
    = taken from the data (its maximum; the training mean for a centred term).
    """

    target: float | None = None
    channels: dict[str, float] | None = None
    controls: dict[str, float] = field(default_factory=dict)
    centers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"target": self.target, "channels": self.channels, "controls": self.controls, "centers": self.centers}

    @property
    def fixes_media(self) -> bool:
        return self.target is not None or self.channels is not None


def resolve_scales(cfg: MMMConfig, features: pd.DataFrame, scales: ModelScales | None = None) -> ModelScales | None:
    """The scales a fit uses: ``scales`` over ``model.scaling``; None when neither fixes anything (data maxima).

    A channel the given scales do not cover (e.g. one added since the champion) takes its maximum in ``features``.
    """
    configured = cfg.model.scaling
    target = scales.target if scales is not None and scales.target is not None else None
    if target is None and configured is not None:
        target = configured.target
    channels = {**((configured.channels or {}) if configured else {}), **((scales.channels or {}) if scales else {})}
    controls = {**(configured.controls if configured else {}), **(scales.controls if scales else {})}
    centers = dict(scales.centers) if scales else {}
    if target is None and not channels and not controls and not centers:
        return None
    if channels:
        channels = {c: float(channels[c]) if c in channels else float(features[c].max()) for c in cfg.channels}
        channels = {c: v if v > 0 else 1.0 for c, v in channels.items()}
    known = set(cfg.controls)
    return ModelScales(
        target=target,
        channels=channels or None,
        controls={k: v for k, v in controls.items() if k in known},
        centers={k: v for k, v in centers.items() if k in known},
    )


def _scaling(scales: ModelScales | None) -> Scaling | None:
    if scales is None or not scales.fixes_media:
        return None
    data_max = DataDerivedScaling(method="max", dims=())
    return Scaling(
        target=FixedScaling(dims=(), value=float(scales.target)) if scales.target is not None else data_max,
        channel=FixedScaling(dims=(), value=dict(scales.channels)) if scales.channels is not None else data_max,
    )


def build_mmm(cfg: MMMConfig, scales: ModelScales | None = None) -> MMM:
    """The configured (unbuilt) MMM: media, seasonality, the non-media terms, with ``scales`` fixed when given."""
    specs = term_specs(cfg)
    mmm = MMM(
        date_column=DATE_COLUMN,
        channel_columns=cfg.channels,
        target_column=TARGET_COLUMN,
        adstock=GeometricAdstock(l_max=cfg.model.adstock_l_max),
        saturation=LogisticSaturation(),
        control_columns=cfg.controls or None,
        yearly_seasonality=cfg.model.yearly_seasonality,
        scaling=_scaling(scales),
        model_config={"gamma_control": NoControlCoefficients()} if cfg.controls else None,
    )
    if specs:
        prior = cfg.model.term_adstock_prior
        mmm.add_mu_effect(
            RoleTerms.from_specs(
                specs,
                cfg.controls,
                cfg.model.adstock_l_max,
                (prior.alpha, prior.beta),
                scales.controls if scales else None,
                scales.centers if scales else None,
            )
        )
    return mmm


def fitted_scales(mmm: MMM) -> ModelScales:
    """The scales a fitted (or loaded) model used: pass them to the next fit to keep its parameters comparable."""
    data = mmm.idata.constant_data
    channel_scale = data["channel_scale"]
    terms = role_terms(mmm)
    columns = set(mmm.control_columns or [])
    return ModelScales(
        target=float(np.asarray(data["target_scale"]).reshape(-1)[0]),
        channels={str(c): float(channel_scale.sel(channel=c)) for c in channel_scale.coords["channel"].values},
        controls={k: v for k, v in (terms.scales if terms else {}).items() if k in columns},
        centers={k: v for k, v in (terms.centers if terms else {}).items() if k in columns},
    )


def available_sampler(requested: str, report: Reporter = _silent) -> str:
    """The requested NUTS backend when its package is installed, PyMC's own sampler otherwise (said to ``report``)."""
    needs = {"nutpie": ["nutpie"], "numpyro": ["numpyro", "jax"], "pymc": []}[requested]
    if all(importlib.util.find_spec(name) for name in needs):
        return requested
    report(f"sampler {requested!r} is not installed; using PyMC's own NUTS sampler instead")
    return "pymc"


class _Throttled:
    """Formats and forwards progress at most every PROGRESS_EVERY_S seconds (and always at the end)."""

    def __init__(self, report: Reporter, total: int) -> None:
        self.report, self.total = report, total
        self.start = self.last = time.monotonic()

    def __call__(self, done: int, divergences: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and done < self.total:
            return
        self.last = now
        pct = 100.0 * done / self.total if self.total else 100.0
        self.report(
            f"sampling: {done}/{self.total} draws incl. tuning ({pct:.0f} %), "
            f"divergences so far {divergences}, {now - self.start:.0f} s"
        )


@contextlib.contextmanager
def _sampler_progress(sampler: str, report: Reporter, total: int) -> Iterator[dict]:
    """Routes the sampler's own progress into ``report``; yields extra keyword arguments for ``fit``."""
    throttled = _Throttled(report, total)
    if sampler == "nutpie":
        # PyMC owns nutpie's progress_callback; a subclass of its progress manager forwards the same updates.
        import pymc.sampling.mcmc as mcmc

        base = mcmc.NutpieProgressBarManager

        class Forwarding(base):  # type: ignore[misc, valid-type]
            def update(self, chain_progresses) -> None:
                throttled(
                    sum(cp.finished_draws for cp in chain_progresses),
                    sum(len(cp.divergent_draws) for cp in chain_progresses),
                )
                super().update(chain_progresses)

        mcmc.NutpieProgressBarManager = Forwarding
        try:
            yield {}
        finally:
            mcmc.NutpieProgressBarManager = base
    elif sampler == "pymc":
        counts = {"draws": 0, "divergences": 0}

        def callback(trace, draw) -> None:
            counts["draws"] += 1
            counts["divergences"] += int(bool(draw.stats[0].get("diverging", False)))
            throttled(counts["draws"], counts["divergences"])

        yield {"callback": callback}
    else:  # numpyro reports nothing while its chains run in parallel: say how long it has been sampling
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(PROGRESS_EVERY_S):
                report(f"sampling with {sampler}: {time.monotonic() - throttled.start:.0f} s")

        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            yield {}
        finally:
            done.set()
            thread.join()


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


def fit(
    cfg: MMMConfig,
    features: pd.DataFrame,
    report: Reporter = _silent,
    sampler_cfg: SamplerConfig | None = None,
    in_sample_predictive: bool = True,
    scales: ModelScales | None = None,
    lift_tests: pd.DataFrame | None = None,
    warm_from: PreviousPosterior | None = None,
) -> FitResult:
    """Fit the configured MMM to a validated feature frame, reporting progress as it samples.

    ``scales`` fixes the model's scales (see :class:`ModelScales`; over ``model.scaling``). ``lift_tests``: validated
    experiments (:func:`mmm_assets.core.calibration.read_lift_tests`); None reads ``model.lift_tests`` when set.
    The ROI priors of ``model.roi_priors`` are always added. ``warm_from``: a previous posterior (the champion's) to
    warm-start numpyro from when ``sampler.warm_start`` is on (:mod:`mmm_assets.core.warmstart`).
    """
    from mmm_assets.core.calibration import add_lift_tests, load_lift_tests

    s = sampler_cfg or cfg.sampler
    absent = [c for c in (*cfg.channels, *cfg.controls) if c not in features.columns]
    if absent:
        raise ValueError(
            f"the feature frame lacks {absent}; calendar event columns come from "
            "mmm_assets.core.roles.with_calendar(frame, cfg), applied before validating the features"
        )
    X, y = split_xy(features)
    used_scales = resolve_scales(cfg, features, scales)
    mmm = build_mmm(cfg, used_scales)
    mmm.build_model(X, y)
    mmm.add_original_scale_contribution_variable(var=["channel_contribution", "y"])
    if used_scales is not None:
        report(f"fixed scales: {used_scales.as_dict()}")
    with_prior = add_roi_priors(mmm, cfg, X)
    if with_prior:
        report(f"ROI priors on {', '.join(with_prior)}")
    tests = lift_tests if lift_tests is not None else load_lift_tests(cfg)
    if tests is not None:
        method = cfg.model.lift_tests.method if cfg.model.lift_tests else "exact"
        added, notes = add_lift_tests(mmm, tests, features, method)
        for note in notes:
            report(f"lift tests: {note}")
        report(f"lift tests: {added} of {len(tests)} experiments calibrate the model ({method})")
    parameters = free_parameters(mmm)
    warm: WarmStart | LaplaceStart | None = _warm_start(mmm, s, warm_from, report)
    sampler = "numpyro" if warm else available_sampler(s.cold, report)
    if warm is None and sampler == "numpyro" and s.cold_start == "laplace":
        warm = LaplaceStart(s.chains, s.seed, report)
    report(
        f"fitting {len(X)} weeks x {len(cfg.channels)} channels with {sampler}: "
        f"{s.chains} chains x ({s.warm_tune if warm else s.tune} tune + {s.draws} draws)"
        f"{f', from {warm.label}' if isinstance(warm, LaplaceStart) else ''}; parameters {', '.join(parameters)}"
    )
    t = cfg.validation.thresholds
    return sample(mmm, X, y, s, sampler, parameters, report, in_sample_predictive,
                  ess_target=max(t.ess_bulk_min, t.ess_tail_min), rhat_target=t.rhat_max, warm=warm,
                  cold_sampler=s.cold)


def _warm_start(mmm: MMM, s: SamplerConfig, previous: PreviousPosterior | None, report: Reporter) -> WarmStart | None:
    """The warm start of a built model from ``previous``, when the settings allow it and the posterior fits."""
    if previous is None or not s.warm_start:
        return None
    if s.name != "numpyro":
        report(f"no warm start: it is built for numpyro, not {s.name}")
        return None
    if available_sampler("numpyro") != "numpyro":
        report("no warm start: numpyro is not installed")
        return None
    warm, why = warm_start(_sampling_model(mmm), previous, s.chains, s.seed)
    if warm is None:
        report(f"no warm start from {previous.label}: {why}")
    else:
        report(f"warm start from {previous.label}: each chain starts at one of its draws and moves with its "
               f"covariance as a fixed dense mass matrix; {s.warm_tune} tuning steps for the step size")
    return warm


def _sampling_model(mmm: MMM):
    """The model PyMC-Marketing hands the sampler (``MMM._get_sampling_model``): its parameter order is the sampler's."""
    from pymc.model.transform.optimization import freeze_dims_and_data

    return freeze_dims_and_data(mmm.model)


def sample(
    mmm: MMM,
    X: pd.DataFrame,
    y: pd.Series,
    s: SamplerConfig,
    sampler: str,
    parameters: list[str],
    report: Reporter = _silent,
    in_sample_predictive: bool = True,
    label: str = "fit",
    ess_target: float | None = None,
    rhat_target: float | None = None,
    warm: WarmStart | LaplaceStart | None = None,
    cold_sampler: str | None = None,
) -> FitResult:
    """Sample a built model with ``sampler`` (progress to ``report``), add its in-sample posterior predictive in
    target units when asked, and diagnose ``parameters``.

    Draws are sized to the ESS target rather than fixed: when ``ess_target`` is given and the smallest bulk or tail
    ESS falls short of it, the model is sampled again with the draws that should reach it (times ESS_MARGIN), at
    most ``s.max_draws`` per chain; when the worst R-hat is above ``rhat_target``, with at least twice the draws.
    The first run's draws are dropped, not mixed with the second's. A ``warm`` start (numpyro) that falls short
    samples ``s.chains`` more chains of the same length instead, started from its own draws and moving with their
    covariance, and keeps them all: the compiled sampler is the same (a new draw count would compile it again),
    and its chains started from the posterior they are now part of. A warm fit is dropped when it diverges, or
    still falls short when more chains would take it past ``s.chains * s.max_draws`` draws: the model is then
    sampled again cold, with ``s.tune`` and ``s.draws``, by ``cold_sampler`` when given (``sampler.cold_name``).
    A start from the Laplace approximation (:class:`LaplaceStart`) is a warm start in all of this; when it finds no
    mode the model is sampled cold at once, adapting its mass matrix.
    """
    started = time.monotonic()
    draws, chains, attempt = s.draws, s.chains, 0
    kept: xr.DataTree | None = None  # the warm chains so far, when more are sampled
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
        mmm._recompute_deterministics = sampler != "numpyro"
        try:
            with _sampler_progress(sampler, report, s.chains * (tune + draws)) as extra, around, placed:
                mmm.fit(
                    X,
                    y,
                    nuts_sampler=sampler,
                    draws=draws,
                    tune=tune,
                    chains=s.chains,
                    target_accept=s.target_accept,
                    random_seed=s.seed + attempt,
                    progressbar=False,
                    **nuts,
                    **extra,
                )
        except LaplaceFailed as failed:
            warm = None
            report(f"{label}: no Laplace start ({failed}); adapting the mass matrix over {s.tune} tuning steps")
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
            room = s.max_draws is not None and (chains + s.chains) * draws <= s.chains * s.max_draws
            if diagnostics.divergences or (reasons and not room):
                reasons += [f"{diagnostics.divergences} divergences"] if diagnostics.divergences else []
                start = warm.label
                draws, chains, warm, kept, attempt = s.draws, s.chains, None, None, attempt + 1
                sampler = available_sampler(cold_sampler, report) if cold_sampler else sampler
                report(f"{label}: started from {start}: {' and '.join(reasons)} after "
                       f"{time.monotonic() - started:.1f} s; "
                       f"sampling again cold with {sampler} ({s.tune} tune + {draws} draws)")
                continue
            if not reasons:
                break
            kept, attempt = mmm.idata, attempt + 1
            warm = _continued(mmm, warm, s.chains, s.seed + attempt)
            report(f"{label}: {' and '.join(reasons)} after {time.monotonic() - started:.1f} s; {s.chains} more "
                   f"warm chains of {draws} draws, started from these {chains} chains' draws and covariance")
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
    continued, _ = warm_start(_sampling_model(mmm), own, chains, seed)
    return continued or warm


def free_parameters(mmm: MMM) -> list[str]:
    return [rv.name for rv in mmm.model.free_RVs]


def save_model(mmm: MMM, path: Path, min_free_mb: float = 0.0) -> Path:
    """Write the fitted model's netCDF to ``path`` atomically and durably, or fail cleanly with ``DiskSpaceError``.

    The netCDF is built in memory (:func:`netcdf_bytes`), so HDF5 never writes to the disk. When PyMC-Marketing's
    ``mmm.save`` hit ENOSPC, h5netcdf's half-written file stayed open, held by the error's traceback; freeing it
    later (h5netcdf's ``__del__`` closes it, and closing flushes into HDF5's broken state) crashed the process with
    a segmentation fault: on a 15 MB tmpfs, and in the pipeline on the step's automatic retry (h5py issue #914).
    Knowing the exact size also lets the free space be checked before anything is written: the disk must hold the
    file and still keep ``min_free_mb`` (`operations.min_free_disk_mb`). The bytes are then written with plain file
    I/O (:func:`_write_atomically`); a disk that fills up meanwhile gives a ``DiskSpaceError`` naming the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} already exists; model files are never overwritten")
    data = netcdf_bytes(mmm)
    ensure_free_space({MODELS_ROLE: path.parent}, min_free_mb, new_file_bytes=len(data))
    with no_room_is_disk_space_error(MODELS_ROLE, path.parent, min_free_mb):
        _write_atomically(path, data)
    return path


def netcdf_bytes(mmm: MMM) -> bytes:
    """The netCDF file that ``mmm.save`` would write, built in memory: no native library touches the disk.

    Written into a buffer of our own and returned as immutable ``bytes``, not as the memoryview that ``to_netcdf()``
    returns without a target: that is a view of xarray's ``BytesIO``, and after a failed write (whose traceback is
    a reference cycle holding slices of the view) the garbage collector freed the ``BytesIO`` before the views
    ("deallocated BytesIO object has exported buffers") and the process crashed with a segmentation fault.
    """
    _prepare_for_save(mmm)
    buffer = io.BytesIO()
    mmm.idata.to_netcdf(buffer, engine=NETCDF_ENGINE)
    return buffer.getvalue()


def _prepare_for_save(mmm: MMM) -> None:
    """What PyMC-Marketing 1.3's ``MMM.save`` adds to the inference data before writing it, so that ``MMM.load``
    rebuilds the same model: the mu effects' own groups and the base names of the original-scale deterministics.
    (``test_model.py`` compares the result with the library's own save.)"""
    if mmm.idata is None or "posterior" not in mmm.idata:
        raise RuntimeError("the model has not been fitted: there is no posterior to save")
    for effect in mmm.mu_effects:
        for group, dataset in effect.idata_groups().items():
            if not hasattr(mmm.idata, group):
                mmm.idata["/" + group] = dataset
    original_scale = [
        name.removesuffix(ORIGINAL_SCALE_SUFFIX)
        for name in mmm.model.named_vars
        if name.endswith(ORIGINAL_SCALE_SUFFIX)
        and (name.removesuffix(ORIGINAL_SCALE_SUFFIX).endswith("_contribution")
             or name.removesuffix(ORIGINAL_SCALE_SUFFIX) == mmm.output_var)
    ]
    mmm.idata.attrs["original_scale_vars"] = json.dumps(original_scale)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a hidden temporary in the same folder, fsynced, renamed to
    ``path``, then the folder fsynced so the rename survives a power cut too. Any failure (or a kill) before the
    rename leaves no file under ``path``; a failure removes the temporary."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".nc.tmp", dir=path.parent)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``: ``os.write`` may write fewer bytes than asked (a signal, a size
    limit, Linux's ~2 GiB cap per call), and the next call then reports the error, e.g. ENOSPC or EFBIG."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_model(path: Path | str) -> MMM:
    """The fitted model saved at ``path``. Model files are immutable, so a process loads each one once."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file {path} does not exist (was the models directory cleaned?)")
    return _load(str(Path(path).resolve()))


@functools.lru_cache(maxsize=2)
def _load(path: str) -> MMM:
    return MMM.load(path)


def mean_hdi(samples: xr.DataArray, prefix: str = "", sample_dims: Sequence[str] = ("chain", "draw")) -> pd.DataFrame:
    """Posterior mean and 94 % HDI over ``sample_dims``: one row per value of the one remaining dimension."""
    dims = list(sample_dims)
    hdi = az.hdi(samples, prob=HDI_PROB, dim=dims)
    return pd.DataFrame(
        {
            f"{prefix}mean": samples.mean(dims).to_numpy(),
            f"{prefix}hdi_low": hdi.sel(ci_bound="lower").to_numpy(),
            f"{prefix}hdi_high": hdi.sel(ci_bound="upper").to_numpy(),
        }
    )


def _interval_frame(samples: xr.DataArray, dates: pd.Index, prefix: str = "") -> pd.DataFrame:
    """Posterior mean and HDI of a (sample, date) array, one row per date."""
    frame = mean_hdi(samples, prefix, [d for d in samples.dims if d != DATE_COLUMN])
    frame.insert(0, DATE_COLUMN, dates)
    return frame


def in_sample_prediction(mmm: MMM, features: pd.DataFrame) -> pd.DataFrame:
    """Actual target with the posterior-predictive mean and 94 % HDI for every fitted week."""
    predictive = mmm.idata.posterior_predictive[PREDICTED]
    frame = _interval_frame(predictive, pd.Index(features[DATE_COLUMN]), "predicted_")
    frame.insert(1, "actual", features[TARGET_COLUMN].to_numpy())
    return frame


@dataclass
class Forecast:
    """A forecast of weeks a fit did not see: the per-week table, the predictive draws and the fit that made them.

    ``frame``: ``date, actual, predicted_mean, predicted_hdi_low, predicted_hdi_high`` (target units);
    ``samples``: the posterior-predictive draws ``(chain, draw, date)`` in target units.
    """

    frame: pd.DataFrame
    samples: xr.DataArray
    fit: FitResult


def forecast_unseen(
    cfg: MMMConfig, train: pd.DataFrame, test: pd.DataFrame, draws: int, report: Reporter = _silent
) -> Forecast:
    """Fit the configured MMM on ``train`` and forecast ``test``, the weeks right after it.

    Adstock is carried over from the training weeks (``include_last_observations``). The refit samples at most
    ``draws`` draws per chain (and as many tuning steps, both capped at the sampler's own): it only predicts, its
    diagnostics gate nothing.
    """
    if test.empty:
        raise ValueError("nothing to forecast: the test window has no weeks")
    if pd.Timestamp(test[DATE_COLUMN].iloc[0]) <= pd.Timestamp(train[DATE_COLUMN].iloc[-1]):
        raise ValueError(
            f"the test window starts on {pd.Timestamp(test[DATE_COLUMN].iloc[0]):%Y-%m-%d}, not after the training "
            f"window's last week {pd.Timestamp(train[DATE_COLUMN].iloc[-1]):%Y-%m-%d}"
        )
    result = fit(cfg, train, report, sampler_cfg=refit_sampler(cfg, draws), in_sample_predictive=False)
    frame, predictive = predict_weeks(result.mmm, test, cfg.sampler.seed)
    return Forecast(frame=frame, samples=predictive, fit=result)


def refit_sampler(cfg: MMMConfig, draws: int) -> SamplerConfig:
    """The sampler of a refit that only predicts: at most ``draws`` draws per chain and as many tuning steps, both
    capped at the configured sampler's own."""
    draws = min(draws, cfg.sampler.draws)
    return cfg.sampler.model_copy(update={"draws": draws, "tune": min(cfg.sampler.tune, draws), "max_draws": None})


def predict_weeks(mmm: MMM, test: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, xr.DataArray]:
    """Forecast ``test``'s weeks with a fitted model, adstock carried over from the weeks it was fitted on: per week
    the actual, the posterior-predictive mean and 94 % HDI (target units), and the draws ``(chain, draw, date)``."""
    columns = [DATE_COLUMN, TARGET_COLUMN, *mmm.channel_columns, *(mmm.control_columns or [])]
    X_test, _ = split_xy(test[columns])
    with quick_compile():
        predictive = mmm.sample_posterior_predictive(
            X_test,
            var_names=[PREDICTED],
            include_last_observations=True,
            extend_idata=False,
            combined=False,
            progressbar=False,
            random_seed=seed,
        )[PREDICTED]
    frame = _interval_frame(predictive, pd.Index(test[DATE_COLUMN]), "predicted_")
    frame.insert(1, "actual", test[TARGET_COLUMN].to_numpy())
    return frame, predictive


@dataclass
class Holdout:
    """The forecast of the last weeks by a posterior that did not see them: ``frame`` as :func:`predict_weeks`'s;
    ``method`` "psis" (the fit's own posterior, reweighted) or "refit"; ``pareto_k`` of the reweighting when it was
    tried (also when it was rejected); ``fit`` the refit when one was made."""

    frame: pd.DataFrame
    method: str
    pareto_k: float | None = None
    fit: FitResult | None = None


def holdout_forecast(
    cfg: MMMConfig, features: pd.DataFrame, weeks: int, report: Reporter = _silent, fitted: MMM | None = None
) -> Holdout:
    """Forecast the last ``weeks`` weeks from a posterior that did not see them (adstock carried over from before).

    With ``validation.holdout_method: psis`` and the model ``fitted`` on every week, that posterior is the fitted one
    reweighted (:func:`leave_future_out`) unless its Pareto k is above ``validation.holdout_pareto_k_max``; otherwise
    the model is refitted on all but those weeks.
    """
    v, k = cfg.validation, None
    if fitted is not None and v.holdout_method == "psis":
        approx = leave_future_out(fitted, features.iloc[-weeks:], cfg.sampler.seed)
        k = approx.pareto_k
        if k <= v.holdout_pareto_k_max:
            report(f"holdout: the last {weeks} weeks forecast by the posterior reweighted to leave them out "
                   f"(PSIS, Pareto k {k:.2f} <= {v.holdout_pareto_k_max}, {approx.ess:.0f} effective draws); no refit")
            return Holdout(approx.frame, "psis", k)
        report(f"holdout: Pareto k {k:.2f} > {v.holdout_pareto_k_max}: the reweighted posterior cannot stand in for a "
               "fit without the last weeks")
    report(f"holdout: refitting on {len(features) - weeks} weeks to forecast the last {weeks} weeks it does not see")
    forecast = forecast_unseen(
        cfg, features.iloc[:-weeks], features.iloc[-weeks:], cfg.validation.holdout_draws, report
    )
    return Holdout(forecast.frame, "refit", k, forecast.fit)


@dataclass(frozen=True)
class Reweighted:
    """A forecast from importance-reweighted draws: the per-week frame, the Pareto k of the weights and the effective
    number of draws they leave (Kish)."""

    frame: pd.DataFrame
    pareto_k: float
    ess: float


def pointwise_log_likelihood(mmm: MMM) -> xr.DataArray:
    """log p(y_t | draw) of every fitted week under each posterior draw ``(chain, draw, date)``: the model's Normal
    likelihood of the scaled target around its ``mu`` with ``y_sigma``."""
    posterior = mmm.idata.posterior
    observed = mmm.idata.observed_data["y"]
    sigma = posterior["y_sigma"]
    return -0.5 * ((observed - posterior["mu"]) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)


def leave_future_out(mmm: MMM, test: pd.DataFrame, seed: int) -> Reweighted:
    """Forecast ``test`` (the last weeks ``mmm`` was fitted on) as if the model had not seen them: approximate
    leave-future-out cross-validation (Bürkner, Gabry & Vehtari 2020).

    p(θ | weeks before) ∝ p(θ | every week) / p(test weeks | θ), so every posterior draw is weighted by the inverse of
    its likelihood of the test weeks, Pareto-smoothed (PSIS); the forecast is the in-sample posterior predictive of
    those weeks under the weighted draws (its adstock carries over from the weeks before, as a refit's forecast with
    ``include_last_observations``). A Pareto k above 0.7 means the weights are too uneven to trust.
    """
    dates = pd.Index(pd.to_datetime(test[DATE_COLUMN]))
    log_lik = pointwise_log_likelihood(mmm).sel(date=dates).sum(DATE_COLUMN)
    log_weights, pareto_k = (-log_lik).azstats.psislw(dim=["chain", "draw"])
    weights = np.exp(log_weights - log_weights.max()).stack(sample=("chain", "draw"))
    weights = (weights / weights.sum()).to_numpy()
    predictive = mmm.idata.posterior_predictive[PREDICTED].sel(date=dates).stack(sample=("chain", "draw"))
    drawn = np.random.default_rng(seed).choice(len(weights), size=len(weights), p=weights)
    frame = _interval_frame(predictive.isel(sample=drawn), dates, "predicted_")
    frame["predicted_mean"] = (predictive * weights).sum("sample").to_numpy()  # exact, not resampled
    frame.insert(1, "actual", test[TARGET_COLUMN].to_numpy())
    return Reweighted(frame=frame, pareto_k=float(pareto_k), ess=float(1.0 / np.sum(weights**2)))


def posterior_parameters(mmm: MMM, names: tuple[str, ...] = ("saturation_lam", "adstock_alpha")) -> pd.DataFrame:
    """Posterior mean and 94 % HDI of per-channel parameters: one row per (channel, parameter)."""
    frames = []
    for name in names:
        draws = mmm.idata.posterior[name]
        frame = mean_hdi(draws).rename(columns={"mean": "estimate"})
        frame.insert(0, "parameter", name)
        frame.insert(0, "channel", [str(c) for c in draws.coords["channel"].values])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def fitted_features(mmm: MMM) -> pd.DataFrame:
    """The canonical feature frame a fitted model was trained on, read back from the model itself."""
    data = mmm.idata.fit_data.to_dataset()
    frame = data.to_dataframe().reset_index()
    columns = [DATE_COLUMN, TARGET_COLUMN, *mmm.channel_columns, *(mmm.control_columns or [])]
    return frame[columns]
