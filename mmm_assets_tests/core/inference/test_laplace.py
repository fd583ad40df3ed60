"""Cold fits started from the Laplace approximation: the mode and covariance, the fit from them, and what happens
when there is no mode."""

import numpy as np
import numpyro.infer
import pymc.sampling.jax as pymc_jax
import pytest
import xarray as xr

from mmm_assets.core.config import SamplerConfig
from mmm_assets.core.inference import sampling as sampling_core
from mmm_assets.core.inference.laplace import (
    QUASI_NEWTON_FROM,
    Blocks,
    Derivatives,
    LaplaceFailedError,
    LaplaceStart,
    find_mode,
    laplace_covariance,
)
from mmm_assets.core.inference.warmstart import PreviousPosterior, warm_start

# a correlated Gaussian potential energy, as narrow as the reference posterior in places
PRECISION = np.linalg.inv(np.array([[1e-4, -0.96e-4 * 0.5, 0.0], [-0.96e-4 * 0.5, 25e-4, 1e-4], [0.0, 1e-4, 1.0]]))
MODE = np.array([1.5, -2.0, 0.3])


def _gaussian(x):
    d = x - MODE
    return 0.5 * d @ PRECISION @ d, PRECISION @ d


def test_the_mode_and_covariance_of_a_gaussian_are_found_from_far_away():
    mode, hessian, steps = find_mode(lambda x: (*_gaussian(x), PRECISION), np.array([10.0, 10.0, -10.0]))
    np.testing.assert_allclose(mode, MODE, atol=1e-6)
    covariance, root = laplace_covariance(hessian)
    np.testing.assert_allclose(covariance, np.linalg.inv(PRECISION), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(root @ root.T, covariance, rtol=1e-9, atol=1e-15)
    assert steps.newton < 50 and steps.quasi_newton == 0  # a small model: Newton's steps alone


def test_the_hessian_comes_from_central_differences_of_one_batched_gradient():
    calls = []

    def value_and_grad(points):  # E(x) = sum(x^4) / 4 + x0 * x1, batched over rows
        calls.append(len(points))
        values = (points**4).sum(axis=1) / 4 + points[:, 0] * points[:, 1]
        grads = points**3 + points[:, [1, 0, 2]] * np.array([1.0, 1.0, 0.0])
        return values, grads

    derivatives, x = Derivatives(value_and_grad), np.array([0.5, -2.0, 300.0])
    value, grad, hessian = derivatives(x)
    assert value == pytest.approx((x**4).sum() / 4 - 1.0)
    np.testing.assert_allclose(grad, [0.125 - 2.0, -8.0 + 0.5, 300.0**3])
    exact = np.diag(3 * x**2) + np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(hessian, exact, rtol=1e-6, atol=1e-6)
    # one call of 2d + 1 points, and the same point is not evaluated again
    derivatives(x.copy())
    assert calls == [7]


def test_a_hessian_of_many_points_is_batched_in_calls_of_one_size(monkeypatch):
    monkeypatch.setattr("mmm_assets.core.inference.laplace.HESSIAN_BATCH", 3)
    calls = []

    def value_and_grad(points):  # the Gaussian potential energy of the test above, batched over rows
        calls.append(len(points))
        return np.array([_gaussian(p)[0] for p in points]), np.array([_gaussian(p)[1] for p in points])

    x = np.array([1.0, -2.0, 0.5])
    value, grad, hessian = Derivatives(value_and_grad)(x)
    assert calls == [3, 3, 3]  # 7 points: two full calls and one padded
    np.testing.assert_allclose(hessian, PRECISION, rtol=1e-6)
    assert value == pytest.approx(_gaussian(x)[0])
    np.testing.assert_allclose(grad, _gaussian(x)[1])


def _pooled_energy(shared: int, blocks: int, size: int, coupled: bool = False):
    """A batched energy of ``shared`` coordinates and ``blocks`` blocks of ``size`` (laid out as [shared, block 0,
    block 1, ...]): quartic in every coordinate, each block tied to the shared ones, and, when ``coupled``, block 0
    to block 1 as well; with its exact Hessian."""
    rng = np.random.default_rng(1)
    d = shared + blocks * size
    tie = np.zeros((d, d))
    for b in range(blocks):
        own = slice(shared + b * size, shared + (b + 1) * size)
        tie[own, :shared] = rng.standard_normal((size, shared))
        tie[own, own] = rng.standard_normal((size, size))
    if coupled:
        tie[shared, shared + size] = 0.7
    tie = (tie + tie.T) / 2

    def value_and_grad(points):
        return (points**4).sum(axis=1) / 4 + 0.5 * np.einsum("ij,jk,ik->i", points, tie, points), points**3 + points @ tie

    return value_and_grad, lambda x: np.diag(3 * x**2) + tie


def test_a_posterior_of_blocks_has_its_hessian_taken_a_block_at_a_time():
    """The same coordinate of every block moves at once: 2 x (shared + block size) + 1 gradients for the Hessian,
    not 2 x d + 1, and the same Hessian. Blocks that turn out to be tied are dropped (a coordinate at a time)."""
    shared, count, size = 3, 5, 4
    blocks = Blocks(np.r_[np.full(shared, -1), np.repeat(np.arange(count), size)],
                    np.r_[np.arange(shared), shared + np.tile(np.arange(size), count)])
    x = np.random.default_rng(2).standard_normal(shared + count * size)
    for coupled, points in ((False, 2 * (shared + size) + 1), (True, 2 * x.size + 1)):
        energy, exact = _pooled_energy(shared, count, size, coupled)
        calls = []
        derivatives = Derivatives(lambda p: calls.append(len(p)) or energy(p), blocks)  # noqa: B023
        assert derivatives.blocks_hold(x) is not coupled
        assert (derivatives.blocks is None) is coupled
        calls.clear()
        value, grad, hessian = derivatives(x)
        assert calls == [points]
        np.testing.assert_allclose(hessian, exact(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad, energy(x[None])[1][0])


def test_a_large_model_approaches_its_mode_by_gradients_before_newton_steps(monkeypatch):
    """From QUASI_NEWTON_FROM parameters, L-BFGS (one gradient per step) brings the search near the mode and Newton
    (2 x parameters gradients per step) only finishes it: far fewer Hessians, the same mode and curvature. L-BFGS
    says how far it got every PROGRESS_EVERY_S seconds (here every step)."""
    d = QUASI_NEWTON_FROM + 50
    rng = np.random.default_rng(0)
    factor = rng.standard_normal((d, d)) / np.sqrt(d)
    precision = factor @ factor.T + np.diag(rng.uniform(0.5, 50.0, d))  # correlated, scales 1:100
    mode = rng.standard_normal(d)
    batches = []

    def value_and_grad(points):  # a Gaussian potential energy, batched over rows
        batches.append(len(points))
        delta = points - mode
        return 0.5 * np.einsum("ij,jk,ik->i", delta, precision, delta), delta @ precision

    monkeypatch.setattr("mmm_assets.core.inference.laplace.PROGRESS_EVERY_S", 0.0)
    messages = []
    found, hessian, steps = find_mode(Derivatives(value_and_grad), np.full(d, 5.0), report=messages.append)
    np.testing.assert_allclose(found, mode, atol=1e-4)
    np.testing.assert_allclose(hessian, precision, rtol=1e-4, atol=1e-4)
    hessians = sum(n == 2 * d + 1 for n in batches)
    assert sum(n == 1 for n in batches) > 10 and hessians <= 4, (hessians, len(batches))
    assert steps.quasi_newton > 10 and steps.newton <= 2, steps
    assert len(messages) == steps.quasi_newton and messages[0].startswith(
        f"Laplace start: L-BFGS step 1 of at most 10,000 ({d} parameters), energy "), messages[:2]


def test_no_mode_no_laplace_start():
    # a potential energy falling without end (an improper posterior): the search does not converge
    with pytest.raises(LaplaceFailedError, match=r"^no mode found in \d+ Newton steps"):
        find_mode(lambda x: (-float(x.sum()), -np.ones_like(x), np.zeros((x.size, x.size))), np.zeros(2),
                  max_steps=20)
    # a saddle is not a mode
    with pytest.raises(LaplaceFailedError, match=r"not positive definite \(smallest eigenvalue -2\)"):
        laplace_covariance(np.diag([1.0, -2.0]))


class _Failing:
    """An MMM whose first fit finds no Laplace start, the next ones a posterior of ones."""

    idata = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def fit(self, X, y, draws, tune, chains, nuts_sampler, **kwargs) -> None:
        given = kwargs.get("nuts_sampler_kwargs", {}).get("adapt_mass_matrix") is False
        self.calls.append((nuts_sampler, tune, given))
        if len(self.calls) == 1:
            raise LaplaceFailedError("no mode found in 500 Newton steps (test)")
        ones = np.ones((chains, draws))
        posterior = xr.Dataset({"a": (("chain", "draw"), ones)}, coords={"chain": range(chains), "draw": range(draws)})
        stats = xr.Dataset({"diverging": (("chain", "draw"), ones == 0)}, coords=posterior.coords)
        self.idata = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


@pytest.mark.parametrize("fallback", [None, "numpyro", "nutpie"])
def test_without_a_laplace_start_the_fit_adapts_its_mass_matrix_with_the_fallback_sampler(monkeypatch, fallback):
    monkeypatch.setattr(sampling_core, "diagnose", lambda idata, parameters: sampling_core.Diagnostics(0, 1.0, 900.0,
                                                                                               900.0, "a"))
    monkeypatch.setattr(sampling_core, "persistent_jax_cache", lambda: None)
    s = SamplerConfig(name="numpyro", chains=2, draws=100, tune=300, target_accept=0.9, seed=7, warm_tune=40)
    fake, messages = _Failing(), []
    result = sampling_core.sample(fake, None, None, s, "numpyro", [], messages.append, in_sample_predictive=False,
                               ess_target=400, warm=LaplaceStart(2, 7, messages.append), cold_sampler=fallback)
    cold = fallback or "numpyro"
    assert fake.calls == [("numpyro", 40, True), (cold, 300, False)]
    assert messages[0] == (f"fit: no Laplace start (no mode found in 500 Newton steps (test)); sampling cold with "
                           f"{cold}, adapting the mass matrix over 300 tuning steps")
    assert result.warm_start is None and result.tune == 300 and result.sampler == cold


def test_a_large_laplace_start_samples_max_draws_at_once_then_cold(monkeypatch):
    """From sampler.laplace_longer_from unconstrained parameters a Laplace start samples max_draws per chain at once
    and, short of a gate, again cold (not more chains); below it, draws per chain and more chains when short."""
    from mmm_assets_tests.core.inference.test_warmstart import _Fake

    high, ok = (sampling_core.Diagnostics(0, rhat, 900.0, 900.0, "a") for rhat in (1.02, 1.001))
    monkeypatch.setattr(sampling_core, "persistent_jax_cache", lambda: None)
    monkeypatch.setattr(sampling_core, "_continued", lambda mmm, warm, chains, seed: warm)
    s = SamplerConfig(name="numpyro", chains=2, draws=100, tune=300, target_accept=0.9, seed=7, max_draws=300,
                      warm_tune=40, laplace_longer_from=5)

    def run(parameters: int, found: list) -> tuple[_Fake, list[str], sampling_core.FitResult]:
        in_turn, fake, messages = iter(found), _Fake(), []
        monkeypatch.setattr(sampling_core, "diagnose", lambda idata, parameters: next(in_turn))
        monkeypatch.setattr(sampling_core, "unconstrained_parameters", lambda mmm: parameters)
        result = sampling_core.sample(fake, None, None, s, "numpyro", [], messages.append, in_sample_predictive=False,
                                      ess_target=400, rhat_target=1.01, warm=LaplaceStart(2, 7, lambda _: None))
        return fake, messages, result

    fake, messages, result = run(5, [ok])
    assert fake.calls == [(40, 300, True)]
    assert messages[0] == ("fit: 5 unconstrained parameters, from sampler.laplace_longer_from 5: 2 chains of 300 "
                           "draws from the Laplace approximation at once")
    assert result.chains == 2 and result.draws == 300 and result.warm_start == "the Laplace approximation at the mode"
    fake, _, result = run(5, [high, ok])  # short of a gate: cold, with the configured draws and chains
    assert fake.calls == [(40, 300, True), (300, 100, False)]
    assert result.warm_start is None and result.chains == 2
    fake, _, result = run(4, [high, ok])  # a smaller model: two more chains of the configured length
    assert fake.calls == [(40, 100, True), (40, 100, True)] and result.chains == 4
    assert SamplerConfig(name="numpyro", chains=2, draws=100, tune=300, seed=7).laplace_longer_from == 600


@pytest.mark.slow
def test_a_cold_fit_starts_from_the_laplace_approximation(small_fit):
    s = small_fit.cfg.sampler
    assert s.name == "numpyro" and s.cold_start == "laplace"
    result = small_fit.result
    assert result.warm_start == "the Laplace approximation at the mode" and result.tune == s.warm_tune
    found = [m for m in small_fit.messages if m.startswith("Laplace start: mode found in ")]
    assert len(found) == 1 and "11 unconstrained parameters" in found[0], small_fit.messages
    assert sampling_core.unconstrained_parameters(small_fit.mmm) == 11  # what sampler.laplace_longer_from compares
    d = result.diagnostics
    assert d.divergences == 0 and d.max_rhat < 1.05 and d.min_ess_bulk >= 100
    # it moves with a matrix fitted to the posterior from the first step: few leapfrog steps per draw, and the
    # chains did not all start at the same point
    assert float(small_fit.mmm.idata.sample_stats["n_steps"].mean()) < 20
    starts = small_fit.mmm.idata.posterior["saturation_lam"].isel(draw=0).values
    assert not np.allclose(starts[0], starts[1])
    assert pymc_jax._get_batched_jittered_initial_points.__module__ == "pymc.sampling.jax"
    assert numpyro.infer.NUTS.__module__ == "numpyro.infer.hmc"


@pytest.mark.slow
def test_the_laplace_approximation_is_close_to_the_posterior_it_starts(small_fit, monkeypatch):
    found = {}

    def kept(hessian):
        found["covariance"], root = laplace_covariance(hessian)
        return found["covariance"], root

    monkeypatch.setattr("mmm_assets.core.inference.laplace.laplace_covariance", kept)
    with LaplaceStart(2, 0, lambda _: None).starting_points():
        model = sampling_core.sampling_model(small_fit.mmm)
        points, _ = pymc_jax._get_batched_jittered_initial_points(
            model=model, chains=2, initvals=None, random_seed=1, logp_fn=_potential(model))
    # the posterior's own covariance (its draws in the sampler's space): the approximation's variances within a
    # factor of two of it, the strongest correlation (saturation_lam and saturation_beta of a channel) found too
    drawn, _ = warm_start(model, PreviousPosterior("fit", small_fit.mmm.idata.posterior.to_dataset()), 2, 0)
    posterior, laplace = drawn.inverse_mass_matrix, found["covariance"]
    ratio = np.diag(laplace) / np.diag(posterior)
    assert ((ratio > 0.5) & (ratio < 2)).all(), ratio

    def correlation(c):
        sd = np.sqrt(np.diag(c))
        return c / np.outer(sd, sd)

    strongest = np.unravel_index(np.argmin(correlation(posterior)), posterior.shape)
    assert correlation(posterior)[strongest] < -0.8 and correlation(laplace)[strongest] < -0.8
    assert len(points) == len(model.value_vars) and all(p.shape[0] == 2 for p in points)


@pytest.mark.slow
def test_more_chains_start_from_the_approximation_already_found(small_fit):
    """A fit short of its gates samples more chains; when its own draws are too few for a covariance, they start
    from the same Laplace approximation, at new draws of it, without searching for the mode again."""
    messages = []
    start = LaplaceStart(2, 0, messages.append)
    model = sampling_core.sampling_model(small_fit.mmm)
    drawn = []
    for seed in (1, 2):
        with start.starting_points():
            points, _ = pymc_jax._get_batched_jittered_initial_points(
                model=model, chains=2, initvals=None, random_seed=seed, logp_fn=_potential(model))
        drawn.append(np.concatenate([np.asarray(p).reshape(2, -1) for p in points], axis=1))
    assert len([m for m in messages if m.startswith("Laplace start: mode found in ")]) == 1, messages
    assert not np.allclose(drawn[0], drawn[1])


def _potential(model):
    from pymc.sampling.jax import get_jaxified_logp

    return get_jaxified_logp(model, negative_logp=False)
