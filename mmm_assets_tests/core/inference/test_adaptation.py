"""A cold numpyro fit's dense mass matrix: regularised towards its own diagonal while a window is small, as it is
otherwise, and far fewer leapfrog steps per draw than numpyro's default on the small scenario."""

import jax.numpy as jnp
import numpy as np
import numpyro.infer.hmc_util as hmc_util
import pymc.sampling.jax as pymc_jax
import pytest

from mmm_assets.core.inference.adaptation import (
    DIAGONAL_FLOOR,
    PSEUDO_DRAWS,
    SMALL_WINDOW_EXTRA,
    SMALL_WINDOW_PER_DIMENSION,
    _regularised,
    scale_free_adaptation,
)
from mmm_assets.core.modelling import fitting as fitting_core


def _state(draws: np.ndarray):
    """numpyro's Welford state (mean, m2, n) of ``draws`` (n, d)."""
    mean = draws.mean(axis=0)
    centred = draws - mean
    return jnp.asarray(mean), jnp.asarray(centred.T @ centred), jnp.asarray(len(draws))


def _covariance(state) -> np.ndarray:
    _, m2, n = state
    return np.asarray(m2) / (int(n) - 1)


def _correlated(n: int, d: int, scale: float = 1e-3) -> np.ndarray:
    """``n`` draws of ``d`` tiny-scale parameters, the first two correlated at -0.96 (like lambda and beta)."""
    rng = np.random.default_rng(0)
    cov = np.eye(d)
    cov[0, 1] = cov[1, 0] = -0.96
    return rng.multivariate_normal(np.zeros(d), cov * scale**2, size=n)


def test_a_large_window_keeps_its_estimate_and_its_scale():
    d = 5
    n = SMALL_WINDOW_PER_DIMENSION * d + SMALL_WINDOW_EXTRA + 1
    state = _state(_correlated(n, d))
    got = _covariance(_regularised(state))
    want = _covariance(state)
    np.testing.assert_allclose(got, want + DIAGONAL_FLOOR * np.diag(np.diag(want)), rtol=1e-6)
    # Stan's regularisation (numpyro's default) would add 1e-3 * 5 / (n + 5) to variances of 1e-6
    assert np.diag(got).max() < 1e-5


def test_a_small_window_is_shrunk_towards_its_diagonal_and_stays_positive_definite():
    d = 32  # ten channels: more dimensions than the first window's 25 draws
    state = _state(_correlated(25, d))
    raw = _covariance(state)
    assert np.linalg.matrix_rank(raw) < d
    got = _covariance(_regularised(state))
    keep = 1 - PSEUDO_DRAWS / (25 + PSEUDO_DRAWS)
    np.testing.assert_allclose(np.diag(got), np.diag(raw) * (1 + DIAGONAL_FLOOR), rtol=1e-6)  # variances kept
    off = ~np.eye(d, dtype=bool)
    np.testing.assert_allclose(got[off], keep * raw[off], rtol=1e-6, atol=1e-15)  # correlations shrunk
    assert np.linalg.eigvalsh(got).min() > 0


def test_a_diagonal_matrix_keeps_its_variances():
    state = (jnp.zeros(3), jnp.array([1e-6, 4e-6, 9e-6]), jnp.asarray(40))
    _, m2, _ = _regularised(state)
    np.testing.assert_allclose(np.asarray(m2), [1e-6, 4e-6, 9e-6], rtol=1e-6)


def test_numpyro_and_pymc_are_restored_after_the_block():
    welford, initial = hmc_util.welford_covariance, pymc_jax._get_batched_jittered_initial_points
    with scale_free_adaptation():
        assert hmc_util.welford_covariance is not welford
        assert pymc_jax._get_batched_jittered_initial_points is not initial
    assert hmc_util.welford_covariance is welford and pymc_jax._get_batched_jittered_initial_points is initial
    with pytest.raises(RuntimeError), scale_free_adaptation():
        raise RuntimeError("a failed fit")
    assert hmc_util.welford_covariance is welford and pymc_jax._get_batched_jittered_initial_points is initial


@pytest.mark.slow
def test_the_dense_mass_matrix_takes_far_fewer_steps_than_numpyros_default(small_fit):
    s = small_fit.cfg.sampler.model_copy(update={"cold_start": "adapt"})
    assert s.name == "numpyro" and s.dense_mass
    adapted = fitting_core.fit(small_fit.cfg.model_copy(update={"sampler": s}), small_fit.features,
                             in_sample_predictive=False)
    assert adapted.warm_start is None and adapted.tune == s.tune
    default = small_fit.cfg.model_copy(update={"sampler": s.model_copy(update={"dense_mass": False})})
    plain = fitting_core.fit(default, small_fit.features, in_sample_predictive=False)
    dense_steps = float(adapted.mmm.idata.sample_stats["n_steps"].mean())
    plain_steps = float(plain.mmm.idata.sample_stats["n_steps"].mean())
    assert dense_steps < plain_steps / 4, (dense_steps, plain_steps)
    d = adapted.diagnostics
    assert d.divergences == 0 and d.max_rhat < 1.05 and d.min_ess_bulk > plain.diagnostics.min_ess_bulk / 2
    assert hmc_util.welford_covariance.__module__ == "numpyro.infer.hmc_util"
