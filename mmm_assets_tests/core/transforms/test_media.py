"""The media families: the configuration's names match the library's, and the compiled curves are the library's."""

import numpy as np
import pytensor.xtensor as ptx
import pytest
import xarray as xr

from mmm_assets.core.config import ADSTOCK_PARAMETERS, SATURATION_CEILING, SATURATION_PARAMETERS
from mmm_assets.core.transforms.media import (
    ADSTOCKS,
    SATURATIONS,
    adstock_transformation,
    apply_adstock,
    apply_media,
    apply_saturation,
    family_of,
    saturation_transformation,
)


def test_the_configuration_names_every_family_and_parameter_as_the_library_does():
    """Fails on a PyMC-Marketing upgrade that renames a family's parameters (the config would name stale ones)."""
    assert set(ADSTOCKS) == set(ADSTOCK_PARAMETERS) and set(SATURATIONS) == set(SATURATION_PARAMETERS)
    for family, names in ADSTOCK_PARAMETERS.items():
        assert tuple(adstock_transformation(family, 8).variable_mapping) == names, family
    for family, names in SATURATION_PARAMETERS.items():
        saturation = saturation_transformation(family)
        assert tuple(saturation.variable_mapping) == names, family
        assert SATURATION_CEILING[family] in names
        assert family_of(saturation) == family


def test_the_logistic_curve_is_the_documented_formula():
    x = np.array([0.0, 0.25, 1.0, 3.0])
    out = apply_saturation(saturation_transformation("logistic"), x, {"lam": 2.0, "beta": 1.5})
    assert np.allclose(out[0], 1.5 * (1 - np.exp(-2 * x)) / (1 + np.exp(-2 * x)))


@pytest.mark.parametrize("family", sorted(SATURATION_PARAMETERS))
def test_every_saturation_rises_from_zero_towards_its_ceiling(family):
    params = {name: 1.0 for name in SATURATION_PARAMETERS[family]}
    params[SATURATION_CEILING[family]] = 2.0
    curve = apply_saturation(saturation_transformation(family), np.array([0.0, 0.5, 1.0, 1e4]), params)[0]
    assert curve[0] == pytest.approx(0.0, abs=1e-12)
    assert (np.diff(curve) > 0).all()
    assert curve[-1] == pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize("family", sorted(ADSTOCK_PARAMETERS))
def test_every_adstock_keeps_a_steady_level_and_matches_the_library_on_posterior_shaped_inputs(family):
    adstock = adstock_transformation(family, 6)
    params = {"alpha": np.array([0.3, 0.6]), "theta": np.array([1.0, 2.0]), "lam": np.array([2.0, 3.0]),
              "k": np.array([1.5, 2.5])}
    params = {name: params[name] for name in ADSTOCK_PARAMETERS[family]}
    x = np.random.default_rng(0).uniform(size=20)
    out = apply_adstock(adstock, x, params)
    assert out.shape == (2, 20)
    assert np.allclose(apply_adstock(adstock, np.ones(20), params)[:, -1], 1.0)  # normalised weights
    library = adstock.function(
        ptx.as_xtensor(xr.DataArray(x, dims=("date",))),
        **{k: ptx.as_xtensor(xr.DataArray(v, dims=("sample",))) for k, v in params.items()},
        dim="date",
    ).transpose("sample", "date").eval()
    assert np.allclose(out, library)


def test_the_order_of_the_transforms_is_the_models():
    adstock, saturation = adstock_transformation("geometric", 4), saturation_transformation("hill")
    x = np.array([1.0, 0.0, 0.0, 2.0, 0.0])
    carry, shape = {"alpha": 0.5}, {"slope": 2.0, "kappa": 0.5, "beta": 1.0}
    first = apply_media(adstock, saturation, True, x, carry, shape)
    later = apply_media(adstock, saturation, False, x, carry, shape)
    assert np.allclose(first, apply_saturation(saturation, apply_adstock(adstock, x, carry), shape))
    assert np.allclose(later, apply_adstock(adstock, apply_saturation(saturation, x, shape), carry))
    assert not np.allclose(first, later)
