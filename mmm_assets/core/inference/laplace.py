"""Starting a cold numpyro fit from a Laplace approximation of the posterior.

A cold fit has no previous posterior to start from (:mod:`mmm_assets.core.inference.warmstart`), so numpyro adapts a
mass matrix while it tunes, starting from the identity. A brand's posterior is narrow and correlated in the sampler's
unconstrained space (variances ~1e-5 to 1e-4 at 208 weeks x 3 channels; saturation_lam against saturation_beta at
-0.96), so the early tuning steps crawl: at 520 weeks x 10 channels every draw after 2 x 100 tuning steps still took
numpyro's maximum of 1,023 leapfrog steps, and 2 x (300 + 700) did not finish in 5 minutes.

The Laplace approximation knows that shape before the first step: the posterior's mode in the unconstrained space,
found by Newton's method with a trust region (scipy's ``trust-exact``) on the sampler's own JAX potential energy, its
exact gradient and a Hessian from central differences of it, and the inverse of that Hessian as the covariance.
:class:`LaplaceStart` places each chain at a different draw of that Gaussian and has it move with the covariance as a
fixed dense mass matrix, the way a warm start moves with the champion's: ``warm_tune`` tuning steps find a step size,
and a fit that then falls short of a gate samples more chains from its own draws or again cold with an adapted matrix
(:func:`mmm_assets.core.inference.sampling.sample`).

The mode is searched from the first of PyMC's own jittered starting points, inside the sampler's call (so the
log-density PyMC builds for JAX is built once). When no mode is found (no convergence, a Hessian that is not positive
definite: a log-density without a proper mode, e.g. a funnel), :class:`LaplaceFailedError` says why and the fit adapts its
matrix as before.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mmm_assets.core.inference.progress import PROGRESS_EVERY_S, Reporter, silent
from mmm_assets.core.inference.warmstart import WarmStart, placed

#: Newton steps before the search for the mode gives up.
MAX_NEWTON_STEPS = 500
#: The mode is found at a point this close to it, in posterior sds (Newton's step from it, in the Hessian's metric).
MODE_DISTANCE = 0.01
#: Central-difference step of the Hessian along each axis, relative to the coordinate (at least 1).
FD_STEP = 1e-5
#: From this many unconstrained parameters the search first approaches the mode by L-BFGS (a gradient per step)
#: before Newton's steps (each a Hessian: 2 x parameters gradients, or 2 x colours of a posterior made of blocks,
#: :class:`Derivatives`: cheap Hessians do not make Newton alone fast, it took 137 steps from PyMC's start at 20
#: geos x 10 channels). Chosen by measurement (docs/performance.md,
#: "Pooled fits from the Laplace approximation"): Newton alone took most of a 20-geo pooled fit (229 parameters);
#: a single market's model (11-40 parameters) finds its mode in well under a second without it.
QUASI_NEWTON_FROM = 100
#: L-BFGS iterations of that approach at most (each one gradient; at 50 geos, 559 parameters, 2,000 of them left 48
#: Newton steps of 1,119 gradients each).
MAX_QUASI_NEWTON_STEPS = 10_000
#: Points per call of the batched gradient when a Hessian needs more (2 x parameters + 1): bounds the memory of the
#: batch (a 50-geo pooled model, 559 parameters, peaked at 6.5 GB with all 1,119 points in one call).
HESSIAN_BATCH = 256
#: L-BFGS stops when no gradient component exceeds this (the energy's gradient in the unconstrained space; at 1e-6
#: the point is well inside MODE_DISTANCE for posterior sds down to 1e-4).
QUASI_NEWTON_GTOL = 1e-6
#: Gradient pairs L-BFGS keeps to model the curvature (scipy's default is 10; the pooled posterior is correlated).
QUASI_NEWTON_MEMORY = 50


class Steps(NamedTuple):
    """How the mode was found: Newton steps (a Hessian each) and L-BFGS iterations (a gradient or a few each)."""

    newton: int
    quasi_newton: int = 0

    def __str__(self) -> str:
        return f"{self.newton} Newton steps" + (f" after {self.quasi_newton} L-BFGS steps" if self.quasi_newton else "")


class LaplaceFailedError(RuntimeError):
    """No usable Laplace approximation (the reason is the message); the fit adapts its mass matrix instead."""


@dataclass
class LaplaceStart:
    """Where a cold fit's ``chains`` start (draws of the Laplace approximation, chosen with ``seed``) and the mass
    matrix they move with (its covariance); both found when the sampler starts. ``report`` gets one line on the
    search."""

    chains: int
    seed: int
    report: Callable[[str], None]
    #: A dimension along which the posterior's blocks are independent given the variables without it (a pooled
    #: model's markets): its Hessian is then taken a block at a time (:func:`blocks_along`).
    block_dim: str | None = None
    #: The mode, if already known (unconstrained value variables by name: the pooled model's, found while learning
    #: its spreads, :mod:`mmm_assets.core.modelling.spread`): the search starts there instead of at PyMC's start.
    start: Mapping[str, np.ndarray] | None = None
    label: str = field(default="the Laplace approximation at the mode", init=False)
    #: The mode and covariance once found: more chains of the same fit (``sampling._continued``, when the fit's own
    #: draws are too few for a covariance of their own) start from them instead of searching again (20 geos: 83 s).
    _found: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _placements: int = field(default=0, init=False, repr=False)

    nuts_kwargs = staticmethod(WarmStart.nuts_kwargs)

    def starting_points(self) -> contextlib.AbstractContextManager[None]:
        """Inside the block, PyMC's numpyro sampler starts its chains at draws of the Laplace approximation and moves
        with its covariance; :class:`LaplaceFailedError` is raised from the sampler's call when there is none."""
        return placed(self._placement)

    def _placement(self, *, model, chains: int, logp_fn, pymc_points, **pymc_kwargs):
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        initial = model.initial_point()
        values = [jnp.asarray(initial[v.name]) for v in model.value_vars]
        _, unravel = ravel_pytree(values)
        if self._found is None:
            self._found = self._search(logp_fn, unravel, chains, pymc_points, pymc_kwargs, model)
        mode, covariance, root = self._found
        rng = np.random.default_rng([self.seed, self._placements] if self._placements else self.seed)
        self._placements += 1
        draws = mode + rng.standard_normal((chains, mode.size)) @ root.T
        per_chain = [unravel(jnp.asarray(draw)) for draw in draws]
        return [np.stack([np.asarray(chain[i]) for chain in per_chain]) for i in range(len(values))], covariance

    def _search(self, logp_fn, unravel, chains: int, pymc_points, pymc_kwargs: dict, model):
        """The mode, the covariance there and its square root, searched from PyMC's first starting point."""
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        started = time.monotonic()
        derivatives = Derivatives(jax.jit(jax.vmap(jax.value_and_grad(lambda x: logp_fn(unravel(x))))),
                                  blocks_along(model, self.block_dim) if self.block_dim else None)

        def energy(values: list) -> float:
            return derivatives(np.asarray(ravel_pytree([jnp.asarray(v) for v in values])[0], dtype=float))[0]

        if self.start is not None:
            first = np.concatenate([np.ravel(self.start[v.name]) for v in model.value_vars]).astype(float)
        else:  # PyMC's jittered points (it checks that the energy is finite there), checked with the one compiled
            # function; the search starts at the first
            points = pymc_points(model=model, chains=chains, logp_fn=energy, **pymc_kwargs)
            first = np.asarray(ravel_pytree([jnp.asarray(p[0] if chains > 1 else p) for p in points])[0], dtype=float)
        if derivatives.blocks is not None and not derivatives.blocks_hold(first):
            self.report(f"Laplace start: the {self.block_dim} blocks of the posterior are not independent given the "
                        "shared variables; its Hessian is taken a parameter at a time")
        mode, hessian, steps = find_mode(derivatives, first, report=self.report, near_start=self.start is not None)
        covariance, root = laplace_covariance(hessian)
        sd = np.sqrt(np.diag(covariance))
        self.report(
            f"Laplace start: mode found in {steps} ({time.monotonic() - started:.1f} s), "
            f"{mode.size} unconstrained parameters, posterior sd {sd.min():.2g}-{sd.max():.2g} there"
        )
        return mode, covariance, root


@dataclass(frozen=True)
class Blocks:
    """The flat unconstrained coordinates of a posterior made of blocks (a pooled model's markets) that interact only
    through shared coordinates: ``block[i]`` is coordinate i's block, -1 for a shared one, and ``colour[i]`` groups
    the same variable and index in every block (each shared coordinate has a colour of its own)."""

    block: np.ndarray
    colour: np.ndarray

    @property
    def colours(self) -> int:
        """How many colours: the steps (each both ways) a Hessian takes."""
        return int(self.colour.max()) + 1


def blocks_along(model, dim: str) -> Blocks | None:
    """The blocks of ``model``'s value variables (in ``model.value_vars``' order, each flattened in C order) along
    ``dim``; None when no variable has it. A variable whose value is not laid out on its dims (a transform that
    changes the shape) counts as shared, which is always right, only slower."""
    point = model.initial_point()
    blocks, colours, next_colour = [], [], 0
    for value in model.value_vars:
        shape = np.shape(point[value.name])
        dims = tuple(model.named_vars_to_dims.get(model.values_to_rvs[value].name) or ())
        if dim in dims and shape == tuple(len(model.coords[d]) for d in dims):
            index = np.indices(shape).reshape(len(shape), -1)
            axis = dims.index(dim)
            others = tuple(n for i, n in enumerate(shape) if i != axis)
            within = np.ravel_multi_index(np.delete(index, axis, axis=0), others) if others else np.zeros(
                index.shape[1], dtype=int)
            blocks.append(index[axis])
            colours.append(next_colour + within)
            next_colour += int(np.prod(others))
        else:
            size = int(np.prod(shape))
            blocks.append(np.full(size, -1))
            colours.append(next_colour + np.arange(size))
            next_colour += size
    block = np.concatenate(blocks)
    return Blocks(block, np.concatenate(colours)) if (block >= 0).any() else None


class Derivatives:
    """The value, gradient and Hessian of a potential energy at a flat point, from one compiled function: its value
    and gradient vmapped over the point and its neighbours a step along each colour of coordinates, both ways
    (central differences of the gradient for the Hessian). One compile instead of two (JAX's exact Hessian took
    1.9 s more on an empty cache at 208 weeks x 3 channels); the last point's answer is kept (the search asks for
    value and Hessian in turn).

    Without ``blocks`` every coordinate is a colour of its own: a Hessian costs 2 x d + 1 gradients. With them, one
    step moves the same coordinate of every block at once, and the Hessian costs 2 x colours + 1: a block's own
    coordinates react only to the block's own move, and a shared coordinate's whole row is its own column (the
    Hessian is symmetric). At 50 markets x 10 channels that is 125 gradients instead of 3,261."""

    def __init__(self, value_and_grad: Callable, blocks: Blocks | None = None) -> None:
        self._value_and_grad = value_and_grad
        self.blocks = blocks
        self._last: tuple[bytes, tuple[float, np.ndarray, np.ndarray]] | None = None

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log-density and gradient at ``x`` alone (no Hessian): one gradient evaluation."""
        values, grads = self._value_and_grad(x[None])
        return float(values[0]), np.asarray(grads[0], dtype=float)

    def blocks_hold(self, x: np.ndarray) -> bool:
        """Whether moving the first and the last block's coordinates from ``x`` leaves every other block's gradient
        as it was (to rounding); if not, the blocks are dropped and the Hessian is taken a coordinate at a time."""
        _, before = self.value_and_grad(x)
        for moved in (0, int(self.blocks.block.max())):
            mine = self.blocks.block == moved
            _, after = self.value_and_grad(np.where(mine, x + 0.1, x))
            others = (self.blocks.block >= 0) & ~mine
            if not np.allclose(after[others], before[others], rtol=1e-9, atol=1e-12):
                self.blocks = None
                return False
        return True

    def _batched(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values and gradients at ``points`` (rows), at most HESSIAN_BATCH per call; the last call padded to the
        same size with copies of the first point, so that one compiled function serves every call."""
        if len(points) <= HESSIAN_BATCH:
            values, grads = self._value_and_grad(points)
            return np.asarray(values, dtype=float), np.asarray(grads, dtype=float)
        n = len(points)
        padded = np.concatenate([points, np.repeat(points[:1], -n % HESSIAN_BATCH, axis=0)])
        parts = [self._value_and_grad(padded[i : i + HESSIAN_BATCH]) for i in range(0, len(padded), HESSIAN_BATCH)]
        values = np.concatenate([np.asarray(v, dtype=float) for v, _ in parts])[:n]
        return values, np.concatenate([np.asarray(g, dtype=float) for _, g in parts])[:n]

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Log-density, gradient and Hessian at ``x`` (unconstrained, flat)."""
        if self._last is not None and self._last[0] == x.tobytes():
            return self._last[1]
        d = x.size
        blocks = self.blocks or Blocks(np.full(d, -1), np.arange(d))
        h, k = FD_STEP * np.maximum(1.0, np.abs(x)), blocks.colours
        steps = np.zeros((k, d))
        steps[blocks.colour, np.arange(d)] = h
        values, grads = self._batched(np.concatenate([x[None], x + steps, x - steps]))
        moved = (grads[1 : k + 1] - grads[k + 1 :]) / 2  # moved[c, i]: sum over j of colour c of H[i, j] h[j]
        columns = moved[blocks.colour].T / h[None, :]  # H[i, j] where j's colour moved nothing else i reacts to
        shared_row, shared_column = blocks.block[:, None] < 0, blocks.block[None, :] < 0
        own = shared_column | (blocks.block[:, None] == blocks.block[None, :])
        hessian = np.where(own, columns, 0.0)
        hessian = np.where(shared_row & ~shared_column, columns.T, hessian)  # a shared row is its own column
        found = float(values[0]), grads[0], (hessian + hessian.T) / 2
        self._last = x.tobytes(), found
        return found


def find_mode(
    derivatives: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]],
    x0: np.ndarray,
    max_steps: int = MAX_NEWTON_STEPS,
    report: Reporter = silent,
    near_start: bool = False,
) -> tuple[np.ndarray, np.ndarray, Steps]:
    """The minimum of a potential energy from ``x0``: (mode, Hessian there, :class:`Steps`), by scipy's trust-region
    Newton method with ``derivatives`` (x -> value, gradient, Hessian). The search stops at a point within
    ``MODE_DISTANCE`` of the mode as Newton's step measures it (in the sd of the Laplace approximation there), or
    at scipy's own convergence (L-BFGS's progress to ``report``); it raises :class:`LaplaceFailedError` when it
    reaches neither. ``near_start``: ``x0`` is expected at or near the mode (a mode found before, for a slightly
    different posterior), so it is returned as it is when already within reach, and Newton's steps start from it
    without the L-BFGS approach. Points where the energy or its derivatives are not finite count as infinitely high
    (the trust region shrinks)."""
    import scipy.optimize

    def finite(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        value, grad, hessian = derivatives(x)
        usable = np.isfinite(value) and np.isfinite(grad).all() and np.isfinite(hessian).all()
        return (value, grad, hessian) if usable else None

    def energy(x: np.ndarray) -> tuple[float, np.ndarray]:
        found = finite(x)
        return (np.inf, np.zeros_like(x)) if found is None else found[:2]

    def curvature(x: np.ndarray) -> np.ndarray:
        found = finite(x)
        return np.eye(x.size) if found is None else found[2]

    def near(x: np.ndarray) -> bool:
        """Newton's step from ``x`` is shorter than MODE_DISTANCE in the metric of the Hessian there."""
        found = finite(x)
        if found is None:
            return False
        try:
            root = np.linalg.cholesky(found[2])
        except np.linalg.LinAlgError:
            return False
        step = np.linalg.solve(root, found[1])
        return float(step @ step) <= MODE_DISTANCE**2

    def stop_near_the_mode(intermediate_result) -> None:
        if near(intermediate_result.x):
            raise StopIteration

    approached = 0
    if not near_start and x0.size >= QUASI_NEWTON_FROM and hasattr(derivatives, "value_and_grad"):
        x0, approached = _approach(derivatives.value_and_grad, x0, report)
    if (near_start or approached) and near(x0):  # there already, or L-BFGS got there: one Hessian, no Newton step
        return x0, curvature(x0), Steps(0, approached)
    found = scipy.optimize.minimize(energy, x0, jac=True, hess=curvature, method="trust-exact",
                                    callback=stop_near_the_mode, options={"maxiter": max_steps, "gtol": 0.0})
    if not (found.success or near(found.x)):
        raise LaplaceFailedError(f"no mode found in {found.nit} Newton steps ({found.message})")
    return found.x, curvature(found.x), Steps(int(found.nit), approached)


def _approach(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
              report: Reporter = silent) -> tuple[np.ndarray, int]:
    """A point near the mode by L-BFGS from ``x0`` and its iterations (``x0`` itself when L-BFGS gets nowhere
    finite); Newton's steps then finish the search where it stopped short. L-BFGS stops on the gradient only, not on
    a small fall of the energy: a posterior 50x narrower in some directions than in others moves the energy by
    little there while the point is still many sds from the mode (20 geos: 19 Newton steps were left after L-BFGS's
    default stop, ~6 s each)."""
    import scipy.optimize

    def energy(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        usable = np.isfinite(value) and np.isfinite(grad).all()
        return (value, grad) if usable else (np.inf, np.zeros_like(x))

    started, steps, last = time.monotonic(), [0], [time.monotonic()]

    def progress(intermediate_result) -> None:  # a line every PROGRESS_EVERY_S s (50 geos x 10 channels: ~10 min)
        steps[0] += 1
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            report(f"Laplace start: L-BFGS step {steps[0]:,} of at most {MAX_QUASI_NEWTON_STEPS:,} "
                   f"({x0.size} parameters), energy {intermediate_result.fun:.2f}, {last[0] - started:.0f} s")

    found = scipy.optimize.minimize(energy, x0, jac=True, method="L-BFGS-B", callback=progress,
                                    options={"maxiter": MAX_QUASI_NEWTON_STEPS, "ftol": 0.0,
                                             "gtol": QUASI_NEWTON_GTOL, "maxcor": QUASI_NEWTON_MEMORY})
    usable = np.isfinite(found.fun) and found.fun <= energy(x0)[0]
    return (found.x, int(found.nit)) if usable else (x0, int(found.nit))


def laplace_covariance(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of a potential energy's Hessian at its mode and a square root of it (lower triangular);
    :class:`LaplaceFailedError` when the Hessian is not positive definite (a saddle or a flat direction, not a mode)."""
    try:
        inverse_root = np.linalg.inv(np.linalg.cholesky(hessian))
    except np.linalg.LinAlgError:
        low = float(np.linalg.eigvalsh(hessian).min())
        raise LaplaceFailedError(f"the Hessian at the mode is not positive definite (smallest eigenvalue {low:.3g})") \
            from None
    covariance = inverse_root.T @ inverse_root
    return covariance, np.linalg.cholesky(covariance)
