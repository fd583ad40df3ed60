"""The pooled model's hierarchical priors, and their between-market spreads learnt from the data (empirical Bayes).

The pooled model (:mod:`mmm_assets.core.modelling.pooling`) draws each market's ``lam``, ``alpha`` and ``beta``
around a per-channel mean with a spread ``s``: ``theta[m, c] ~ Normal(mu[c], s[c])`` on the log or logit scale
(:class:`PoolingPriors`). How alike the markets are is a property of the data, so ``markets.spread: learnt`` (and
``auto``, from :data:`LEARNT_FROM_MARKETS` markets on) estimates one spread per parameter and channel before
sampling, and samples the model with those spreads fixed; ``fixed`` keeps PoolingPriors' stated ones.

Why not sample the spreads with everything else (as Meridian does for its geo-level ``beta``): measured here, a
learnt spread made the posterior a funnel that neither numpyro nor nutpie crossed in a usable budget (max R-hat
1.055-1.10 at 5-20 geos, every draw at the maximum tree depth; docs/performance.md, "Pooling: a fixed spread").
With the spreads fixed the pooled posterior has a proper mode, which the Laplace start uses
(:mod:`mmm_assets.core.inference.laplace`).

How: the spreads that maximise the marginal likelihood of the data (``theta`` and ``mu`` integrated out under the
Laplace approximation), by expectation-maximisation. At the posterior's mode for the current spreads, with the
Laplace covariance there, the expected squared deviation of each market from its channel's mean is
``S = sum over m of (theta[m] - mu)^2 + var(theta[m] - mu)``, and the new spread is ``sqrt(S / (M - 1))`` for M
markets: the maximum under a Gamma(2, 0) prior on the spread, the default of Chung et al. (2013, "A nondegenerate
penalized likelihood estimator for variance parameters in multilevel models", the ``blme`` R package), which
keeps an estimate off zero when few markets say little, and is otherwise flat. The mode moves with the spreads
(a Newton step or two from the last one). The model is compiled once, at the configured spreads: only the prior's
Gaussian term depends on them, so the potential energy for other spreads is that model's plus a quadratic
correction with an exact gradient and Hessian (:class:`Respread`).

The plug-in spreads are treated as known while sampling: the posterior's width leaves out their own uncertainty,
which is small with many markets (a spread from M markets has a relative standard error near 1 / sqrt(2 M)).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pymc_extras.prior import Prior

from mmm_assets.core.config import MARKET_COLUMN
from mmm_assets.core.inference.laplace import Derivatives, blocks_along, find_mode, laplace_covariance
from mmm_assets.core.inference.progress import PROGRESS_EVERY_S, Reporter, silent

#: The pooled media parameters whose spread is learnt (PoolingPriors' fields).
POOLED_PARAMETERS = ("saturation_lam", "adstock_alpha", "saturation_beta")
#: markets.spread: auto learns the spreads from this many markets on (and keeps the stated ones below): a spread from
#: M markets has a relative standard error near 1 / sqrt(2 (M - 1)), 35 % at 5. Chosen by measurement
#: (docs/performance.md, "Pooling: spreads learnt from the data"): on the 3-market test scenario, whose data-poor
#: market then borrowed less, the fit from the learnt spreads diverged and fell back to a cold fit (4x the time).
LEARNT_FROM_MARKETS = 5
#: The EM stops when no spread changes by more than this fraction in an iteration.
TOLERANCE = 0.002
#: EM iterations at most; the spreads reached are used, and the log says they had not settled.
MAX_ITERATIONS = 200


@dataclass(frozen=True)
class LearntSpreads:
    """The spreads learnt per pooled parameter and channel, and the mode of the posterior with them (unconstrained
    value variables by name: the pooled model with these spreads starts its Laplace search there)."""

    spreads: dict[str, np.ndarray]
    channels: list[str]
    mode: dict[str, np.ndarray]
    iterations: int
    settled: bool
    seconds: float

    def describe(self) -> str:
        """One line per parameter: each channel's learnt spread."""
        return "; ".join(f"{name}: " + ", ".join(f"{c} {s:.3g}" for c, s in zip(self.channels, values, strict=True))
                         for name, values in self.spreads.items())


#: A spread per channel is an array over the channel dim, which pymc_extras' Prior converts to exactly that, saying so
#: at every build of the model (and of every market's run loading it); the DataArray with dims that it asks for
#: instead fails in PyMC 6.3's Normal (NotImplementedError: cannot convert a DataArray to a tensor).
warnings.filterwarnings("ignore", message=r"Implicit conversion of array-like parameter sigma to DataArray",
                        category=UserWarning)


@dataclass(frozen=True)
class HierarchicalPrior:
    """One media parameter across markets: ``link(theta[m, c])``, ``theta[m, c] ~ Normal(mu[c], spread)`` and
    ``mu[c] ~ Normal(mean, mean_sd)``, on the link's unbounded scale (log or logit). ``spread``: one for every
    channel, or one per channel in the model's channel order (learnt ones, :func:`learn_spreads`)."""

    mean: float
    mean_sd: float
    spread: float | tuple[float, ...]

    def __post_init__(self) -> None:
        if not (self.mean_sd > 0 and np.all(np.asarray(self.spread) > 0)):
            raise ValueError(f"mean_sd ({self.mean_sd}) and spread ({self.spread}) must be > 0")

    def prior(self, transform: str) -> Prior:
        """The prior of one media parameter across markets, drawn around its per-channel mean."""
        return Prior(
            "Normal",
            mu=Prior("Normal", mu=self.mean, sigma=self.mean_sd, dims="channel"),
            sigma=np.asarray(self.spread, dtype=float) if isinstance(self.spread, tuple) else self.spread,
            dims=(MARKET_COLUMN, "channel"),
            transform=transform,
        )


@dataclass(frozen=True)
class PoolingPriors:
    """The hierarchical priors of the pooled model.

    The shared means default to the single-market model's default priors, moment-matched on the link scale:
    ``lam`` ~ Gamma(3, 1) (mean 3, sd 1.7) gives log-normal (0.955, 0.536); ``alpha`` ~ Beta(1, 3) (mean 0.25)
    gives logit-normal (-1.1, 1.2); ``beta`` ~ HalfNormal(2) on the max-scaled target becomes a log-normal centred
    on 0.5 with sd 1 (0.07-3.5 for 95 % of the mass), a log scale being what lets markets be pooled by ratio. The
    spreads say how alike the markets are assumed to be: about ±20 % in ``lam``, ±0.3 on the logit scale in
    ``alpha`` (±0.05 around 0.25) and ±30 % in ``beta`` (in units of each market's own target maximum).
    """

    saturation_lam: HierarchicalPrior = field(default_factory=lambda: HierarchicalPrior(0.955, 0.536, 0.2))
    adstock_alpha: HierarchicalPrior = field(default_factory=lambda: HierarchicalPrior(-1.1, 1.2, 0.3))
    saturation_beta: HierarchicalPrior = field(default_factory=lambda: HierarchicalPrior(math.log(0.5), 1.0, 0.3))

    def spreads(self) -> dict[str, float | tuple[float, ...]]:
        """The spread of each pooled media parameter (spread.POOLED_PARAMETERS' names)."""
        return {name: getattr(self, name).spread for name in POOLED_PARAMETERS}

    def with_spreads(self, spreads: Mapping[str, np.ndarray]) -> PoolingPriors:
        """The same priors with these spreads (per parameter, one per channel)."""
        return dataclasses.replace(self, **{name: dataclasses.replace(
            getattr(self, name), spread=tuple(float(v) for v in values)) for name, values in spreads.items()})

    def model_config(self) -> dict[str, Prior]:
        """PyMC-Marketing's model_config for the pooled media parameters."""
        return {
            "saturation_lam": self.saturation_lam.prior("exp"),
            "adstock_alpha": self.adstock_alpha.prior("sigmoid"),
            "saturation_beta": self.saturation_beta.prior("exp"),
        }


#: The pooled model's idata attribute, copied to every market's view: the between-market spreads it was fitted with
#: and where they came from (JSON; the asset's metadata shows it).
SPREADS_ATTR = "between_market_spreads"


def spread_record(priors: PoolingPriors, channels: Sequence[str], learnt: LearntSpreads | None) -> str:
    """SPREADS_ATTR's value: each pooled parameter's spread per channel, learnt (``learnt``) or stated."""
    spreads = {name: dict(zip(channels, np.broadcast_to(np.asarray(s, dtype=float), len(channels)).tolist(),
                              strict=True)) for name, s in priors.spreads().items()}
    source = (f"learnt from the data ({learnt.iterations} EM iterations{'' if learnt.settled else ', not settled'})"
              if learnt else "stated (markets.spread: fixed, or auto with too few markets to learn them from)")
    return json.dumps({"source": source, "spreads": spreads})


def learns(setting: str, markets: int, report: Reporter = silent) -> bool:
    """Whether markets.spread ``setting`` learns the spreads of a pooled model of ``markets`` markets (when auto
    does not, the reason goes to ``report``)."""
    if setting == "auto" and markets < LEARNT_FROM_MARKETS:
        report(f"between-market spreads: the stated ones (markets.spread auto learns them from {LEARNT_FROM_MARKETS} "
               f"markets on; there are {markets})")
    return setting == "learnt" or (setting == "auto" and markets >= LEARNT_FROM_MARKETS)


class Respread:
    """The potential energy of a pooled model built with spreads ``s0`` (``derivatives``), as if built with other
    spreads (``spreads``, settable): each group ``g`` (a parameter and channel) adds
    ``(1 / s^2 - 1 / s0^2) * sum over m of (x[theta[g, m]] - x[mu[g]])^2 / 2 + M log(s / s0)``.

    ``theta``: (groups, markets) flat indices of each market's coordinate; ``mu``: (groups,) the mean's. The
    correction couples a market's coordinate with its channel's mean only, so a Hessian by markets stays one."""

    def __init__(self, derivatives: Derivatives, theta: np.ndarray, mu: np.ndarray, s0: np.ndarray) -> None:
        self.derivatives, self.theta, self.mu, self.s0 = derivatives, theta, mu, s0
        self.spreads = s0.copy()

    def _correction(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Value, gradient, per-group weight and deviations of the correction at ``x``."""
        w = 1 / self.spreads**2 - 1 / self.s0**2
        d = x[self.theta] - x[self.mu][:, None]
        value = float((w[:, None] * d**2).sum() / 2 + self.theta.shape[1] * np.log(self.spreads / self.s0).sum())
        grad = np.zeros_like(x)
        np.add.at(grad, self.theta, w[:, None] * d)
        np.add.at(grad, self.mu, -(w[:, None] * d).sum(axis=1))
        return value, grad, w, d

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy and gradient at ``x`` with ``spreads`` (one gradient of the compiled model)."""
        value, grad = self.derivatives.value_and_grad(x)
        extra, extra_grad, _, _ = self._correction(x)
        return value + extra, grad + extra_grad

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Energy, gradient and Hessian at ``x`` with ``spreads``."""
        value, grad, hessian = self.derivatives(x)
        extra, extra_grad, w, _ = self._correction(x)
        hessian = hessian.copy()  # the derivatives keep theirs for the next call at the same point
        markets = self.theta.shape[1]
        np.add.at(hessian, (self.theta, self.theta), np.repeat(w[:, None], markets, axis=1))
        np.add.at(hessian, (self.mu, self.mu), markets * w)
        mu = np.repeat(self.mu[:, None], markets, axis=1)
        np.add.at(hessian, (self.theta, mu), -np.repeat(w[:, None], markets, axis=1))
        np.add.at(hessian, (mu, self.theta), -np.repeat(w[:, None], markets, axis=1))
        return value + extra, grad + extra_grad, hessian

    def maximised(self, x: np.ndarray, covariance: np.ndarray) -> np.ndarray:
        """The spreads that maximise the expected log-density (Gamma(2, 0) prior on each) under the Gaussian with
        mean ``x`` and ``covariance``."""
        d = x[self.theta] - x[self.mu][:, None]
        mu = np.repeat(self.mu[:, None], self.theta.shape[1], axis=1)
        variance = covariance[self.theta, self.theta] + covariance[mu, mu] - 2 * covariance[self.theta, mu]
        return np.sqrt((d**2 + variance).sum(axis=1) / (self.theta.shape[1] - 1))


def learn_spreads(model, spreads: Mapping[str, float | Sequence[float]], market_dim: str,
                  report: Reporter = silent) -> LearntSpreads:
    """The spreads of a built pooled model's (``pm.Model``) media parameters that maximise the data's marginal
    likelihood (module docstring). ``spreads``: per pooled parameter (a ``<name>_raw`` variable with dims (market,
    channel) around ``<name>_raw_mu`` with dims (channel,)), the spread the model was built with (one, or one per
    channel), where the search starts."""
    import jax
    from jax.flatten_util import ravel_pytree
    from pymc.sampling.jax import get_jaxified_logp

    started = time.monotonic()
    names = [v.name for v in model.value_vars]
    point = model.initial_point()
    flat, unravel = ravel_pytree([np.asarray(point[n]) for n in names])  # as LaplaceStart lays the values out
    offset = dict(zip(names, np.cumsum([0, *(np.size(point[n]) for n in names)])[:-1], strict=True))
    markets, channels = len(model.coords[market_dim]), [str(c) for c in model.coords["channel"]]
    arange = np.arange(markets * len(channels)).reshape(markets, len(channels))
    theta = np.concatenate([(offset[f"{p}_raw"] + arange).T for p in spreads])
    mu = np.concatenate([offset[f"{p}_raw_mu"] + np.arange(len(channels)) for p in spreads])
    s0 = np.concatenate([np.broadcast_to(np.asarray(spreads[p], dtype=float), len(channels)) for p in spreads])

    energy = get_jaxified_logp(model, negative_logp=False)
    respread = Respread(Derivatives(jax.jit(jax.vmap(jax.value_and_grad(lambda x: energy(unravel(x))))),
                                    blocks_along(model, market_dim)), theta, mu, s0)
    x = np.asarray(flat, dtype=float)
    report(f"learning the between-market spreads: the posterior's mode with the assumed ones ({x.size} parameters)")
    x, hessian, steps = find_mode(respread, x, report=report)
    report(f"learning the between-market spreads: mode found in {steps} ({time.monotonic() - started:.1f} s)")
    last, settled, iteration = time.monotonic(), False, 0
    for iteration in range(1, MAX_ITERATIONS + 1):
        new = respread.maximised(x, laplace_covariance(hessian)[0])
        change = float(np.max(np.abs(new / respread.spreads - 1)))
        respread.spreads = new
        x, hessian, _ = find_mode(respread, x, report=report, near_start=True)
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            report(f"learning the between-market spreads: iteration {iteration}, largest change {change:.2%}, "
                   f"{last - started:.0f} s")
        if change <= TOLERANCE:
            settled = True
            break
    learnt = {p: respread.spreads[i * len(channels):(i + 1) * len(channels)].copy() for i, p in enumerate(spreads)}
    mode = {n: np.asarray(v) for n, v in zip(names, unravel(x), strict=True)}
    found = LearntSpreads(learnt, channels, mode, iteration, settled, time.monotonic() - started)
    report(f"between-market spreads learnt from the data in {iteration} EM iterations ({found.seconds:.1f} s"
           f"{'' if settled else ', not settled: the last ones are used'}): {found.describe()}")
    return found
