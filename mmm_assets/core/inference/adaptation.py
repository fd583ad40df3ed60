"""How a cold numpyro fit adapts its mass matrix: dense, regularised without assuming the posterior has unit scale.

numpyro tunes the mass matrix in windows of tuning draws (Stan's schedule) and regularises every window's estimate as
Stan does: ``n / (n + 5) * cov + 1e-3 * 5 / (n + 5) * I`` for ``n`` draws. The added 1e-3 is small for a posterior of
unit scale; the reference scenario's posterior variances in the sampler's unconstrained space are ~1e-5 to 1e-4, so
it swamps them, the matrix ends up near a multiple of the identity and the correlation of saturation_lam with
saturation_beta (-0.96) is lost. Dense and without it, the reference scenario's leapfrog steps per
draw fall from hundreds to single digits (docs/performance.md, "Mass-matrix adaptation").

With no regularisation at all, a window holding fewer draws than the posterior has dimensions (the first window has
25; ten channels make 32 dimensions) gives a singular matrix. So inside :func:`scale_free_adaptation` a window's
covariance is shrunk towards its own diagonal -- variances kept, correlations scaled by ``1 - w`` with Stan's
``w = 5 / (n + 5)`` -- while the window holds at most ``SMALL_WINDOW_PER_DIMENSION * d + SMALL_WINDOW_EXTRA`` draws;
larger windows keep their estimate as it is (measured: docs/performance.md). A relative floor of
``DIAGONAL_FLOOR`` keeps the matrix positive definite.

The swap of ``numpyro.infer.hmc_util.welford_covariance`` lasts for the block only; it is traced into the compiled
sampler, which JAX's persistent cache keeps like any other. In the same block PyMC checks its chains' starting
points with a jitted log-density: PyMC calls it op by op, and each JAX op compiled on its own (the compile counts
are in docs/performance.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: A window with at most this many draws per dimension (plus SMALL_WINDOW_EXTRA) is shrunk towards its diagonal.
SMALL_WINDOW_PER_DIMENSION = 2
SMALL_WINDOW_EXTRA = 10
#: Stan's pseudo-count: a window of ``n`` draws keeps ``n / (n + PSEUDO_DRAWS)`` of its correlations when shrunk.
PSEUDO_DRAWS = 5.0
#: Added to every variance, relative to it.
DIAGONAL_FLOOR = 1e-8


def cold_nuts_kwargs() -> dict:
    """numpyro NUTS arguments of a cold fit inside :func:`scale_free_adaptation`: a dense mass matrix, adapted."""
    return {"dense_mass": True}


def _regularised(state):
    """A window's Welford state ``(mean, m2, n)`` (or a dict of them, one per block) regularised as described above;
    ``m2 / (n - 1)`` is the window's covariance, so scaling ``m2`` scales it."""
    import jax.numpy as jnp

    if isinstance(state, dict):
        return {block: _regularised(part) for block, part in state.items()}
    mean, m2, n = state
    if jnp.ndim(m2) == 1:  # a diagonal matrix: variances only, nothing to shrink
        return mean, m2 * (1.0 + DIAGONAL_FLOOR), n
    dimensions = m2.shape[0]
    small = n <= SMALL_WINDOW_PER_DIMENSION * dimensions + SMALL_WINDOW_EXTRA
    weight = jnp.where(small, PSEUDO_DRAWS / (n + PSEUDO_DRAWS), 0.0)
    diagonal = jnp.diag(jnp.diag(m2))
    return mean, (1.0 - weight) * m2 + (weight + DIAGONAL_FLOOR) * diagonal, n


@contextlib.contextmanager
def scale_free_adaptation() -> Iterator[None]:
    """numpyro fits started in the block regularise their adapted mass matrices as this module describes, and PyMC
    checks their starting points with a jitted log-density."""
    import jax
    import numpyro.infer.hmc_util as hmc_util
    import pymc.sampling.jax as pymc_jax

    stans, made_by_pymc = hmc_util.welford_covariance, pymc_jax._get_batched_jittered_initial_points

    def welford_covariance(diagonal: bool = True):
        init, update, final = stans(diagonal=diagonal)

        def final_fn(state, regularize: bool = False):
            return final(_regularised(state) if regularize else state, regularize=False)

        return init, update, final_fn

    def initial_points(*args, logp_fn=None, **kwargs):
        return made_by_pymc(*args, logp_fn=None if logp_fn is None else jax.jit(logp_fn), **kwargs)

    hmc_util.welford_covariance, pymc_jax._get_batched_jittered_initial_points = welford_covariance, initial_points
    try:
        yield
    finally:
        hmc_util.welford_covariance, pymc_jax._get_batched_jittered_initial_points = stans, made_by_pymc
