"""Learning a pooled model's between-market spreads (core.modelling.spread), on Gaussian models where the marginal
likelihood is known exactly: the Laplace approximation is exact there, so the EM must land on its maximum."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import scipy.optimize
import scipy.stats

from mmm_assets.core.inference.laplace import MODE_DISTANCE, Derivatives, blocks_along
from mmm_assets.core.modelling.spread import LEARNT_FROM_MARKETS, Respread, learn_spreads, learns

MARKETS, CHANNELS, OBSERVATIONS, NOISE, MEAN_SD = 30, 3, 20, 1.0, 3.0
TRUE_SPREADS = np.array([0.2, 0.6, 1.2])


def data(seed: int = 0) -> np.ndarray:
    """(market, channel, observation) draws of a two-level Gaussian model with TRUE_SPREADS between markets."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, MEAN_SD, CHANNELS)
    theta = means + TRUE_SPREADS * rng.standard_normal((MARKETS, CHANNELS))
    return theta[..., None] + NOISE * rng.standard_normal((MARKETS, CHANNELS, OBSERVATIONS))


def toy(y: np.ndarray, spread) -> pm.Model:
    """A pooled parameter ``p`` as the pooled MMM names it (``p_raw`` around ``p_raw_mu``) with Gaussian data."""
    coords = {"market": [f"m{i}" for i in range(MARKETS)], "channel": [f"c{j}" for j in range(CHANNELS)],
              "obs": np.arange(OBSERVATIONS)}
    with pm.Model(coords=coords) as model:
        mu = pm.Normal("p_raw_mu", 0, MEAN_SD, dims="channel")
        theta = pm.Normal("p_raw", mu, np.asarray(spread, dtype=float), dims=("market", "channel"))
        pm.Normal("y", theta[..., None], NOISE, observed=y, dims=("market", "channel", "obs"))
    return model


def derivatives(model: pm.Model) -> Derivatives:
    import jax
    from jax.flatten_util import ravel_pytree
    from pymc.sampling.jax import get_jaxified_logp

    energy = get_jaxified_logp(model, negative_logp=False)
    point = model.initial_point()
    _, unravel = ravel_pytree([np.asarray(point[v.name]) for v in model.value_vars])
    return Derivatives(jax.jit(jax.vmap(jax.value_and_grad(lambda x: energy(unravel(x))))),
                       blocks_along(model, "market"))


def exact_spread(y: np.ndarray, channel: int) -> float:
    """The spread maximising log p(y | spread) + log spread (the Gamma(2, 0) prior), from the exact marginal of the
    market means of one channel: N(0, (spread^2 + noise^2 / n) I + mean_sd^2 J)."""
    means = y[:, channel].mean(axis=1)

    def loss(log_s: float) -> float:
        cov = (np.exp(2 * log_s) + NOISE**2 / OBSERVATIONS) * np.eye(MARKETS) + MEAN_SD**2
        return -(scipy.stats.multivariate_normal(np.zeros(MARKETS), cov).logpdf(means) + log_s)

    return float(np.exp(scipy.optimize.minimize_scalar(loss, bounds=(-8, 3), method="bounded",
                                                       options={"xatol": 1e-8}).x))


def test_respread_is_the_model_built_with_the_other_spreads() -> None:
    y, assumed, other = data(), np.array([0.3, 0.3, 0.3]), np.array([0.1, 0.5, 2.0])
    built, rebuilt = toy(y, assumed), toy(y, other)
    layout = [v.name for v in built.value_vars]
    assert layout == ["p_raw_mu", "p_raw"]
    theta = (CHANNELS + np.arange(MARKETS * CHANNELS).reshape(MARKETS, CHANNELS)).T
    respread = Respread(derivatives(built), theta, np.arange(CHANNELS), assumed)
    respread.spreads = other
    target = derivatives(rebuilt)
    x = np.random.default_rng(1).normal(size=CHANNELS + MARKETS * CHANNELS)
    value, grad, hessian = respread(x)
    want_value, want_grad, want_hessian = target(x)
    assert value == pytest.approx(want_value, rel=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(hessian, want_hessian, rtol=1e-5, atol=1e-5 * np.abs(want_hessian).max())
    assert respread.value_and_grad(x)[0] == pytest.approx(want_value, rel=1e-10)


def test_learnt_spreads_are_the_marginal_likelihoods_maximum() -> None:
    y = data()
    learnt = learn_spreads(toy(y, 0.3), {"p": 0.3}, "market")
    exact = np.array([exact_spread(y, c) for c in range(CHANNELS)])
    assert learnt.settled and learnt.channels == ["c0", "c1", "c2"]
    # within 1 %: the EM stops on a 0.2 % change, and dividing by M instead of M - 1 would be 1.7 % off
    np.testing.assert_allclose(learnt.spreads["p"], exact, rtol=0.01)
    # the spreads are learnt from the data: each lands nearer its own truth than the assumed 0.3 (two are far)
    assert np.all(np.abs(np.log(learnt.spreads["p"] / TRUE_SPREADS)) < np.abs(np.log(0.3 / TRUE_SPREADS)))
    # the mode handed to the sampler is the mode of the posterior with the learnt spreads: Newton's step from it is
    # within MODE_DISTANCE posterior sds
    _, grad, hessian = derivatives(toy(y, learnt.spreads["p"]))(
        np.concatenate([learnt.mode["p_raw_mu"], learnt.mode["p_raw"].ravel()]))
    step = np.linalg.solve(np.linalg.cholesky(hessian), grad)
    assert float(step @ step) <= MODE_DISTANCE**2


def test_auto_learns_the_spreads_from_five_markets_on() -> None:
    said: list[str] = []
    assert not learns("auto", LEARNT_FROM_MARKETS - 1, said.append) and learns("auto", LEARNT_FROM_MARKETS)
    assert said == [f"between-market spreads: the stated ones (markets.spread auto learns them from "
                    f"{LEARNT_FROM_MARKETS} markets on; there are {LEARNT_FROM_MARKETS - 1})"]
    assert learns("learnt", 2) and not learns("fixed", 50)
