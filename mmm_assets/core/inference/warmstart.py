"""Warm-starting a fit from the previous posterior.

A weekly refresh fits nearly the data the last one did, so the last trustworthy posterior (the registry's champion)
already knows where the new one lies and what shape it has. With a :class:`WarmStart`, numpyro's NUTS starts each
chain at a different draw of that posterior and moves with its covariance as a fixed dense mass matrix (both in the
sampler's unconstrained space), so tuning only has to find a step size: 100 tuning steps instead of the 300 a cold
fit needs to adapt its matrix. On the reference scenario the posterior is narrow and correlated (saturation_lam
against saturation_beta at -0.96): with numpyro's default diagonal mass matrix NUTS takes ~410 leapfrog steps per
draw; warm, ~7, as many as a cold fit with the dense matrix of :mod:`mmm_assets.core.inference.adaptation` once it has
adapted.

PyMC's own ``pm.sample(initvals=...)`` cannot place the chains: for PyMC-Marketing's dims (xtensor) models, PyMC
5.x applies the xtensor transforms to a plain tensor and fails. And a mass matrix given to numpyro's ``NUTS`` is a
constant of the compiled sampler, so every new posterior would compile it again (~3-5 s). So, for the duration of a
fit, :meth:`WarmStart.starting_points` swaps the function of ``pymc.sampling.jax`` that makes the initial points (after
checking that the sampler's parameters are the ones the warm start was made for) and numpyro's ``NUTS`` for a subclass
that takes the matrix from the initial parameters, which the compiled sampler receives as an argument: a rerun on
the same data loads its sampler from JAX's cache whatever the previous posterior was. PyMC's default
``chain_method="parallel"`` (one chain per device) is assumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytensor
import xarray as xr
from pytensor.xtensor import as_xtensor
from pytensor.xtensor.type import XTensorType

from mmm_assets.core.inference.compiling import QUICK_MODE

#: Fewest previous draws per unconstrained dimension for a covariance worth moving with.
MIN_DRAWS_PER_DIMENSION = 10
_SAMPLE_DIM = "__warm_start_sample"


@dataclass(frozen=True)
class PreviousPosterior:
    """A posterior to start from, and what to call it in the log (e.g. "champion v3")."""

    label: str
    posterior: xr.Dataset


def read_posterior(path: Path | str, label: str) -> PreviousPosterior:
    """The posterior group of a saved model (the netCDF :func:`mmm_assets.core.modelling.persistence.save_model`
    writes)."""
    with xr.open_dataset(path, group="posterior") as stored:
        return PreviousPosterior(label, stored.load())


@dataclass(frozen=True)
class WarmStart:
    """Where a fit's chains start and the mass matrix they move with, for one sampling model."""

    label: str
    #: The sampling model's value variables, in the order the sampler flattens them.
    order: tuple[str, ...]
    #: Value-variable name -> (chains, *shape) unconstrained starting values, one previous draw per chain.
    starts: dict[str, np.ndarray]
    #: (d, d): the covariance of the previous draws in the unconstrained space, in ``order``.
    inverse_mass_matrix: np.ndarray

    @property
    def chains(self) -> int:
        """How many chains the starting points are for."""
        return next(iter(self.starts.values())).shape[0]

    @staticmethod
    def nuts_kwargs() -> dict:
        """numpyro NUTS arguments: a dense mass matrix (:attr:`inverse_mass_matrix`), kept as it is during tuning."""
        return {"dense_mass": True, "adapt_mass_matrix": False}

    def starting_points(self) -> contextlib.AbstractContextManager[None]:
        """Inside the block, PyMC's numpyro sampler starts its chains at :attr:`starts` and moves with
        :attr:`inverse_mass_matrix`."""
        return placed(self._given)

    def _given(self, *, model, chains: int, **_) -> tuple[list[np.ndarray], np.ndarray]:
        names = tuple(v.name for v in model.value_vars)
        if names != self.order or chains != self.chains:
            raise RuntimeError(
                f"the sampler's parameters {names} x {chains} chains are not those the warm start from "
                f"{self.label} was made for ({self.order} x {self.chains} chains)"
            )
        return [self.starts[name] for name in names], self.inverse_mass_matrix


#: ``(model=, chains=, logp_fn=, pymc_points=, **PyMC's other arguments) -> (starts, inverse mass matrix)``: one
#: ``(chains, *shape)`` array per value variable of ``model`` in its order, and a (d, d) matrix in the same order.
Placement = Callable[..., tuple[list[np.ndarray], np.ndarray]]


@contextlib.contextmanager
def placed(placement: Placement) -> Iterator[None]:
    """Inside the block, PyMC's numpyro sampler starts its chains where ``placement`` says and moves with the dense
    inverse mass matrix it returns, an argument of the compiled sampler. ``placement`` gets what PyMC gives its
    function of initial points (``model``, ``chains``, ``logp_fn``: the sampler's potential energy, ...) and that
    function itself as ``pymc_points``."""
    import numpyro.infer
    import pymc.sampling.jax as pymc_jax

    made_by_pymc, nuts = pymc_jax._get_batched_jittered_initial_points, numpyro.infer.NUTS

    def given(*, chains: int, **kwargs) -> tuple[list[np.ndarray], np.ndarray]:
        points, matrix = placement(chains=chains, pymc_points=made_by_pymc, **kwargs)
        if chains == 1:
            return [p[0] for p in points], matrix
        return points, np.broadcast_to(matrix, (chains, *matrix.shape))

    class MassFromStart(nuts):  # type: ignore[misc, valid-type]
        """NUTS whose initial parameters are (positions, inverse mass matrix): both arguments of the sampler."""

        def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
            positions, self._inverse_mass_matrix = init_params
            return super().init(rng_key, num_warmup, positions, model_args, model_kwargs or {})

    pymc_jax._get_batched_jittered_initial_points, numpyro.infer.NUTS = given, MassFromStart
    try:
        yield
    finally:
        pymc_jax._get_batched_jittered_initial_points, numpyro.infer.NUTS = made_by_pymc, nuts


def warm_start(model, previous: PreviousPosterior, chains: int, seed: int) -> tuple[WarmStart | None, str]:
    """A warm start for sampling ``model`` (the model the sampler is given: PyMC-Marketing's frozen one) from
    ``previous``; or None and why not (a parameter missing or shaped differently, other coordinates, too few draws).
    The chains start at ``chains`` different previous draws, chosen with ``seed``."""
    posterior = previous.posterior
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    values, outputs = {}, []
    for vv in model.value_vars:
        rv = model.values_to_rvs[vv]
        name = rv.name
        if name not in posterior:
            return None, f"{previous.label} has no {name}"
        stored = posterior[name]
        dims = tuple(getattr(vv.type, "dims", ()))
        if stored.dims[2:] != dims:
            return None, f"{name} has dims {stored.dims[2:]} in {previous.label}, {dims} in this model"
        for dim in dims:
            theirs, ours = [str(c) for c in stored[dim].values], [str(c) for c in model.coords[dim]]
            if theirs != ours:
                return None, f"{dim} is {theirs} in {previous.label}, {ours} in this model"
        sample = stored.stack({_SAMPLE_DIM: ("chain", "draw")}).transpose(_SAMPLE_DIM, *dims).values
        transform = model.rvs_to_transforms.get(rv)
        if transform is None:
            values[vv.name] = sample
            continue
        if isinstance(vv.type, XTensorType):
            unconstrained = transform.forward(as_xtensor(sample, dims=(_SAMPLE_DIM, *dims))).values
        else:
            unconstrained = transform.forward(pytensor.tensor.as_tensor(sample))
        outputs.append((vv.name, unconstrained))
    if outputs:
        computed = pytensor.function([], [out for _, out in outputs], mode=QUICK_MODE)()
        values.update({name: np.asarray(v) for (name, _), v in zip(outputs, computed, strict=True)})
    flat = np.concatenate([values[vv.name].reshape(n, -1) for vv in model.value_vars], axis=1)
    if n < MIN_DRAWS_PER_DIMENSION * flat.shape[1]:
        return None, f"{previous.label} has {n} draws, fewer than {MIN_DRAWS_PER_DIMENSION} per parameter"
    if not np.isfinite(flat).all():
        return None, f"{previous.label} has draws outside this model's support"
    covariance = np.atleast_2d(np.cov(flat, rowvar=False))
    try:
        np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        return None, f"the covariance of {previous.label}'s draws is not positive definite"
    picks = np.random.default_rng(seed).choice(n, size=chains, replace=n < chains)
    order = tuple(vv.name for vv in model.value_vars)
    starts = {name: values[name][picks] for name in order}
    return WarmStart(previous.label, order, starts, covariance), ""
