"""Warm starts: from a previous posterior to the sampler's starting points and mass matrix, and back to a cold fit
when a warm one misses the gates."""

import dataclasses

import numpy as np
import numpyro.infer
import pymc.sampling.jax as pymc_jax
import pytest
import xarray as xr
from pymc.model.transform.optimization import freeze_dims_and_data

from mmm_assets.core.config import SamplerConfig
from mmm_assets.core.inference import sampling as sampling_core
from mmm_assets.core.inference.warmstart import PreviousPosterior, WarmStart, read_posterior, warm_start
from mmm_assets.core.modelling import fitting as fitting_core
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.variables import PREDICTED

pytestmark = pytest.mark.slow


def _sampling_model(small_fit):
    return freeze_dims_and_data(small_fit.mmm.model)


def test_the_chains_start_at_previous_draws_and_move_with_their_covariance(small_fit):
    model = _sampling_model(small_fit)
    posterior = small_fit.mmm.idata.posterior.to_dataset()
    warm, why = warm_start(model, PreviousPosterior("the small fit", posterior), chains=3, seed=1)
    assert why == "" and warm.order == tuple(v.name for v in model.value_vars) and warm.chains == 3
    lam = posterior["saturation_lam"].stack(s=("chain", "draw")).transpose("s", "channel").values
    alpha = posterior["adstock_alpha"].stack(s=("chain", "draw")).transpose("s", "channel").values
    # each chain's start is one previous draw, in the sampler's unconstrained space (log, log-odds)
    starts = np.exp(warm.starts["saturation_lam_log__"])
    assert all(np.isclose(lam, row, rtol=1e-12).all(axis=1).any() for row in starts)
    odds = np.log(alpha / (1 - alpha))
    assert all(np.isclose(odds, row, rtol=1e-12).all(axis=1).any() for row in warm.starts["adstock_alpha_logodds__"])
    assert len({tuple(row) for row in starts}) == 3
    # the mass matrix is the covariance of every unconstrained draw, flattened in the sampler's order
    columns = {"saturation_lam_log__": np.log(lam), "adstock_alpha_logodds__": odds}
    size = {v.name: int(np.prod(warm.starts[v.name].shape[1:])) for v in model.value_vars}
    offset = {name: sum(size[n] for n in warm.order[: warm.order.index(name)]) for name in warm.order}
    for name, values in columns.items():
        block = slice(offset[name], offset[name] + size[name])
        np.testing.assert_allclose(warm.inverse_mass_matrix[block, block], np.cov(values, rowvar=False), rtol=1e-9)


def test_no_warm_start_from_a_posterior_of_other_channels(small_fit):
    posterior = small_fit.mmm.idata.posterior.to_dataset()
    renamed = posterior.assign_coords(channel=[f"{c}_old" for c in posterior["channel"].values])
    warm, why = warm_start(_sampling_model(small_fit), PreviousPosterior("champion v7", renamed), 2, 0)
    assert warm is None and why.startswith("channel is [") and "in champion v7" in why
    fewer = posterior.isel(draw=slice(0, 10), chain=slice(0, 1))
    warm, why = warm_start(_sampling_model(small_fit), PreviousPosterior("champion v7", fewer), 2, 0)
    assert warm is None and why == "champion v7 has 10 draws, fewer than 10 per parameter"


def test_a_warm_fit_moves_with_the_given_matrix_and_leaves_pymc_and_numpyro_as_they_were(small_fit, tmp_path):
    path = persistence_core.save_model(small_fit.mmm, tmp_path / "previous.nc")
    previous = read_posterior(path, "champion v1")
    messages: list[str] = []
    result = fitting_core.fit(small_fit.cfg, small_fit.features, report=messages.append, in_sample_predictive=False,
                            warm_from=previous)
    s = small_fit.cfg.sampler
    assert result.warm_start == "champion v1" and result.tune == s.warm_tune
    assert messages[0].startswith("warm start from champion v1: each chain starts at one of its draws")
    assert messages[1].startswith(f"fitting {len(small_fit.features)} weeks x 3 channels with numpyro: "
                                  f"2 chains x ({s.warm_tune} tune + {s.draws} draws)")
    d = result.diagnostics
    assert d.divergences == 0 and d.max_rhat < 1.05 and d.min_ess_bulk >= 100
    # it moves with the given matrix from its first step (not adapted: with numpyro's identity it would take
    # hundreds of steps), as well as the cold fit does with the Laplace approximation's
    warm_steps = float(result.mmm.idata.sample_stats["n_steps"].mean())
    cold_steps = float(small_fit.mmm.idata.sample_stats["n_steps"].mean())
    assert warm_steps < 2 * cold_steps, (warm_steps, cold_steps)
    # the same parameters as the cold fit, within its uncertainty
    cold, warm = (r.idata.posterior["saturation_lam"] for r in (small_fit.mmm, result.mmm))
    sd = cold.std(("chain", "draw"))
    assert (abs(warm.mean(("chain", "draw")) - cold.mean(("chain", "draw"))) < sd).all()
    assert pymc_jax._get_batched_jittered_initial_points.__module__ == "pymc.sampling.jax"
    assert numpyro.infer.NUTS.__module__ == "numpyro.infer.hmc"


def test_warm_starts_are_switched_off_or_numpyro_only(small_fit):
    previous = PreviousPosterior("champion v1", small_fit.mmm.idata.posterior.to_dataset())
    messages: list[str] = []
    off = small_fit.cfg.sampler.model_copy(update={"warm_start": False})
    assert fitting_core._warm_start(small_fit.mmm, off, previous, messages.append) is None and not messages
    nutpie = small_fit.cfg.sampler.model_copy(update={"name": "nutpie"})
    assert fitting_core._warm_start(small_fit.mmm, nutpie, previous, messages.append) is None
    assert messages == ["no warm start: it is built for numpyro, not nutpie"]


def test_fits_that_are_not_warm_started_sample_with_cold_name_and_fall_back_with_fallback_name(small_fit, monkeypatch):
    chosen = []
    monkeypatch.setattr(fitting_core, "sample", lambda mmm, X, y, s, sampler, *args, warm=None, cold_sampler=None, **kw:
                        chosen.append((sampler, type(warm).__name__, cold_sampler)))
    s = small_fit.cfg.sampler.model_copy(update={"cold_name": "nutpie"})
    assert (s.name, s.cold, small_fit.cfg.sampler.cold) == ("numpyro", "nutpie", "numpyro")
    cfg = small_fit.cfg.model_copy(update={"sampler": s})
    previous = PreviousPosterior("champion v1", small_fit.mmm.idata.posterior.to_dataset())
    fitting_core.fit(cfg, small_fit.features)
    fitting_core.fit(cfg, small_fit.features, warm_from=previous)
    # the first fit is nutpie's; the warm one numpyro's, with nutpie for a cold fallback
    assert chosen == [("nutpie", "NoneType", "nutpie"), ("numpyro", "WarmStart", "nutpie")]
    # a cold numpyro fit starts from the Laplace approximation, unless told to adapt its mass matrix
    chosen.clear()
    fitting_core.fit(small_fit.cfg, small_fit.features)
    adapt = small_fit.cfg.sampler.model_copy(update={"cold_start": "adapt"})
    fitting_core.fit(small_fit.cfg.model_copy(update={"sampler": adapt}), small_fit.features)
    assert chosen == [("numpyro", "LaplaceStart", "numpyro"), ("numpyro", "NoneType", "numpyro")]
    # sampler.fallback_name: the backend of the cold fit that replaces a failed Laplace or warm start
    chosen.clear()
    fallback = small_fit.cfg.sampler.model_copy(update={"fallback_name": "nutpie"})
    cfg = small_fit.cfg.model_copy(update={"sampler": fallback})
    fitting_core.fit(cfg, small_fit.features)
    fitting_core.fit(cfg, small_fit.features, warm_from=previous)
    assert chosen == [("numpyro", "LaplaceStart", "nutpie"), ("numpyro", "WarmStart", "nutpie")]


class _Fake:
    """An MMM whose fits record their settings and return a posterior of ``chains`` x ``draws`` call numbers."""

    idata = None

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, bool]] = []
        self.samplers: list[str] = []
        self.accept: list[float] = []

    def fit(self, X, y, draws, tune, chains, random_seed, nuts_sampler, **kwargs) -> None:
        # (tune, draws, warm: the mass matrix given, not adapted)
        self.calls.append((tune, draws, kwargs.get("nuts_sampler_kwargs", {}).get("adapt_mass_matrix") is False))
        self.samplers.append(nuts_sampler)
        self.accept.append(kwargs["target_accept"])
        values = np.full((chains, draws), len(self.calls))
        posterior = xr.Dataset({"a": (("chain", "draw"), values)}, coords={"chain": range(chains), "draw": range(draws)})
        stats = xr.Dataset({"diverging": (("chain", "draw"), values == 0)}, coords=posterior.coords)
        self.idata = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


def _sample(
    monkeypatch, found: list, s: SamplerConfig, cold_sampler: str | None = None
) -> tuple[_Fake, list[str], sampling_core.FitResult]:
    found_in_turn = iter(found)
    monkeypatch.setattr(sampling_core, "diagnose", lambda idata, parameters: next(found_in_turn))
    monkeypatch.setattr(sampling_core, "persistent_jax_cache", lambda: None)
    monkeypatch.setattr(sampling_core, "_continued", lambda mmm, warm, chains, seed: warm)
    warm = WarmStart("champion v3", ("a",), {"a": np.zeros((2, 1))}, np.eye(1))
    fake, messages = _Fake(), []
    result = sampling_core.sample(fake, None, None, s, "numpyro", [], messages.append, in_sample_predictive=False,
                               ess_target=400, rhat_target=1.01, warm=warm, cold_sampler=cold_sampler)
    return fake, messages, result


def test_a_warm_fit_that_misses_the_gates_samples_more_warm_chains_or_again_cold(monkeypatch):
    ok, short, high = (sampling_core.Diagnostics(0, rhat, ess, 900.0, "a") for rhat, ess in
                       ((1.001, 900.0), (1.001, 300.0), (1.02, 900.0)))
    s = SamplerConfig(name="numpyro", chains=2, draws=100, tune=300, target_accept=0.9, seed=7, max_draws=200,
                      warm_tune=40)
    diverged = sampling_core.Diagnostics(2, 1.001, 900.0, 900.0, "a")
    # divergences: the same start again with smaller steps; diverging again, cold (at the smaller steps)
    fake, messages, result = _sample(monkeypatch, [diverged, ok], s)
    assert fake.calls == [(40, 100, True), (40, 100, True)] and fake.accept == [0.9, 0.99]
    assert messages[0].startswith("fit: started from champion v3: 2 divergences after ")
    assert messages[0].endswith("the same start again with target_accept 0.99 (smaller steps), 2 chains")
    assert result.warm_start == "champion v3" and result.chains == 2
    fake, messages, result = _sample(monkeypatch, [diverged, diverged, ok], s)
    assert fake.calls == [(40, 100, True), (40, 100, True), (300, 100, False)] and fake.accept == [0.9, 0.99, 0.99]
    assert messages[1].startswith("fit: started from champion v3: 2 divergences after ")
    assert messages[1].endswith("sampling again cold with numpyro (300 tune + 100 draws)")
    assert result.warm_start is None and result.tune == 300 and result.chains == 2
    assert result.sampler == "numpyro" and fake.samplers == ["numpyro", "numpyro", "numpyro"]
    # short of the ESS target: two more warm chains of the same length, kept with the first two
    fake, messages, result = _sample(monkeypatch, [short, ok], s)
    assert fake.calls == [(40, 100, True), (40, 100, True)]
    assert messages[0].startswith("fit: smallest ESS 300 < 400 after ")
    assert messages[0].endswith("2 more warm chains of 100 draws, started from these 2 chains' draws and covariance")
    assert result.warm_start == "champion v3" and result.draws == 100 and result.chains == 4
    posterior = result.mmm.idata.posterior
    assert list(posterior["chain"].values) == [0, 1, 2, 3] and result.mmm.idata.sample_stats.sizes["chain"] == 4
    assert posterior["a"].isel(draw=0).values.tolist() == [1, 1, 2, 2]
    # still short when more chains would pass 2 x max_draws draws: cold, with the configured draws and chains
    fake, messages, result = _sample(monkeypatch, [short, high, ok], s, cold_sampler="nutpie")
    assert fake.calls == [(40, 100, True), (40, 100, True), (300, 100, False)]
    assert messages[1].startswith("fit: started from champion v3: max R-hat 1.0200 > 1.01 after ")
    assert messages[1].endswith("sampling again cold with nutpie (300 tune + 100 draws)")
    assert result.warm_start is None and result.chains == 2
    assert fake.samplers == ["numpyro", "numpyro", "nutpie"] and result.sampler == "nutpie"
    # with max_draws null (a refit that only predicts) a warm fit short of a gate is kept, not sampled again cold;
    # one that diverges is still sampled again
    never = s.model_copy(update={"max_draws": None})
    fake, messages, result = _sample(monkeypatch, [high], never)
    assert fake.calls == [(40, 100, True)] and result.warm_start == "champion v3" and result.chains == 2
    assert len(messages) == 1 and messages[0].startswith("fit done in ")
    fake, _, result = _sample(monkeypatch, [diverged, diverged, ok], never)
    assert fake.calls == [(40, 100, True), (40, 100, True), (300, 100, False)] and result.warm_start is None


def test_more_warm_chains_start_from_the_fit_and_are_kept_with_it(small_fit, monkeypatch):
    s = small_fit.cfg.sampler.model_copy(update={"max_draws": 2 * small_fit.cfg.sampler.draws})
    cfg = small_fit.cfg.model_copy(update={"sampler": s})
    diagnose, chains = sampling_core.diagnose, []

    def first_short(idata, parameters):
        chains.append(idata.posterior.sizes["chain"])
        found = diagnose(idata, parameters)
        return dataclasses.replace(found, min_ess_bulk=1.0) if len(chains) == 1 else found

    monkeypatch.setattr(sampling_core, "diagnose", first_short)
    previous = PreviousPosterior("champion v1", small_fit.mmm.idata.posterior.to_dataset())
    messages: list[str] = []
    result = fitting_core.fit(cfg, small_fit.features, report=messages.append, warm_from=previous)
    assert chains == [2, 4] and result.chains == 4 and result.warm_start == "champion v1"
    assert any(m.endswith(f"2 more warm chains of {s.draws} draws, started from these 2 chains' draws and covariance")
               for m in messages)
    assert messages[-1].startswith("fit done in ") and f"(4 x {s.draws} draws, from champion v1)" in messages[-1]
    idata = result.mmm.idata
    assert idata.sample_stats.sizes["chain"] == 4
    assert idata.posterior_predictive[PREDICTED].sizes["chain"] == 4
    lam = idata.posterior["saturation_lam"]
    assert not np.allclose(lam.sel(chain=[0, 1]).values, lam.sel(chain=[2, 3]).values)
    # the extra chains' warm start comes from the fit itself, under the champion's label
    warm, _ = warm_start(_sampling_model(small_fit), PreviousPosterior("x", idata.posterior.to_dataset()), 2, 0)
    again = sampling_core._continued(result.mmm, WarmStart("champion v1", (), {}, np.eye(1)), 2, 0)
    assert again.label == "champion v1"
    np.testing.assert_allclose(again.inverse_mass_matrix, warm.inverse_mass_matrix)
