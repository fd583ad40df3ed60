"""Starting a cold numpyro fit from a Laplace approximation of the posterior.

A cold fit has no previous posterior to start from (:mod:`mmm_assets.core.warmstart`), so numpyro adapts a mass
matrix while it tunes, starting from the identity. A brand's posterior is narrow and correlated in the sampler's
unconstrained space (variances ~1e-5 to 1e-4 at 208 weeks x 3 channels; saturation_lam against saturation_beta at
-0.96), so the early tuning steps crawl: at 520 weeks x 10 channels every draw after 2 x 100 tuning steps still took
numpyro's maximum of 1,023 leapfrog steps, and 2 x (300 + 700) did not finish in 5 minutes.

The Laplace approximation knows that shape before the first step: the posterior's mode in the unconstrained space,
found by Newton's method with a trust region (scipy's ``trust-exact``) on the sampler's own JAX potential energy, its
exact gradient and Hessian, and the inverse of that Hessian as the covariance. :class:`LaplaceStart` places each chain
at a different draw of that Gaussian and has it move with the covariance as a fixed dense mass matrix, the way a warm
start moves with the champion's: ``warm_tune`` tuning steps find a step size, and a fit that then falls short of a gate
samples more chains from its own draws or again cold with an adapted matrix (:func:`mmm_assets.core.model.sample`).

The mode is searched from the first of PyMC's own jittered starting points, inside the sampler's call (so the
log-density PyMC builds for JAX is built once). When no mode is found (no convergence, a Hessian that is not positive
definite: a log-density without a proper mode, e.g. a funnel), :class:`LaplaceFailed` says why and the fit adapts its
matrix as before.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mmm_assets.core.warmstart import WarmStart, placed

#: Newton steps before the search for the mode gives up.
MAX_NEWTON_STEPS = 500
#: The mode is found when the largest gradient component of the potential energy is below this.
GRADIENT_TOLERANCE = 1e-5


class LaplaceFailed(RuntimeError):
    """No usable Laplace approximation (the reason is the message); the fit adapts its mass matrix instead."""


@dataclass
class LaplaceStart:
    """Where a cold fit's ``chains`` start (draws of the Laplace approximation, chosen with ``seed``) and the mass
    matrix they move with (its covariance); both found when the sampler starts. ``report`` gets one line on the
    search."""

    chains: int
    seed: int
    report: Callable[[str], None] = print
    label: str = field(default="the Laplace approximation at the mode", init=False)

    nuts_kwargs = staticmethod(WarmStart.nuts_kwargs)

    def starting_points(self) -> contextlib.AbstractContextManager[None]:
        """Inside the block, PyMC's numpyro sampler starts its chains at draws of the Laplace approximation and moves
        with its covariance; :class:`LaplaceFailed` is raised from the sampler's call when there is none."""
        return placed(self._placement)

    def _placement(self, *, model, chains: int, logp_fn, pymc_points, **pymc_kwargs):
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        started = time.monotonic()
        jitted = jax.jit(logp_fn)
        # PyMC's jittered points (it checks that the log-density is finite there); the search starts at the first
        points = pymc_points(model=model, chains=chains, logp_fn=jitted, **pymc_kwargs)
        first = [jnp.asarray(p[0] if chains > 1 else p) for p in points]
        x0, unravel = ravel_pytree(first)
        mode, hessian, steps = find_mode(
            jax.jit(jax.value_and_grad(lambda x: logp_fn(unravel(x)))),
            jax.jit(jax.hessian(lambda x: logp_fn(unravel(x)))),
            np.asarray(x0, dtype=float),
        )
        covariance, root = laplace_covariance(hessian)
        draws = mode + np.random.default_rng(self.seed).standard_normal((chains, mode.size)) @ root.T
        per_chain = [unravel(jnp.asarray(draw)) for draw in draws]
        starts = [np.stack([np.asarray(chain[i]) for chain in per_chain]) for i in range(len(first))]
        sd = np.sqrt(np.diag(covariance))
        self.report(
            f"Laplace start: mode found in {steps} Newton steps ({time.monotonic() - started:.1f} s), "
            f"{mode.size} unconstrained parameters, posterior sd {sd.min():.2g}-{sd.max():.2g} there"
        )
        return starts, covariance


def find_mode(
    value_and_grad: Callable, hessian: Callable, x0: np.ndarray, max_steps: int = MAX_NEWTON_STEPS
) -> tuple[np.ndarray, np.ndarray, int]:
    """The minimum of a potential energy from ``x0``: (mode, Hessian there, Newton steps), by scipy's trust-region
    Newton method with the given exact derivatives. Raises :class:`LaplaceFailed` when it does not converge.
    Points where the energy or its gradient are not finite count as infinitely high (the trust region shrinks)."""
    import scipy.optimize

    def energy(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        value, grad = float(value), np.asarray(grad, dtype=float)
        if not (np.isfinite(value) and np.isfinite(grad).all()):
            return np.inf, np.zeros_like(grad)
        return value, grad

    def curvature(x: np.ndarray) -> np.ndarray:
        h = np.asarray(hessian(x), dtype=float)
        return (h + h.T) / 2 if np.isfinite(h).all() else np.eye(x.size)

    found = scipy.optimize.minimize(energy, x0, jac=True, hess=curvature, method="trust-exact",
                                    options={"maxiter": max_steps, "gtol": GRADIENT_TOLERANCE})
    if not found.success:
        raise LaplaceFailed(f"no mode found in {found.nit} Newton steps ({found.message})")
    return found.x, curvature(found.x), int(found.nit)


def laplace_covariance(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of a potential energy's Hessian at its mode and a square root of it (lower triangular);
    :class:`LaplaceFailed` when the Hessian is not positive definite (a saddle or a flat direction, not a mode)."""
    try:
        inverse_root = np.linalg.inv(np.linalg.cholesky(hessian))
    except np.linalg.LinAlgError:
        low = float(np.linalg.eigvalsh(hessian).min())
        raise LaplaceFailed(f"the Hessian at the mode is not positive definite (smallest eigenvalue {low:.3g})") \
            from None
    covariance = inverse_root.T @ inverse_root
    return covariance, np.linalg.cholesky(covariance)
