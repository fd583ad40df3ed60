"""A saved model's shared media scale: the library's own entry for ``Scaled`` cannot write a per-channel factor as
JSON, ours (core/inference/serialization.py) can and reads it back."""

import json

import numpy as np
import pytest
import xarray as xr
from pymc_extras.prior import Prior, Scaled
from pymc_marketing import special_priors
from pymc_marketing.serialization import serialization

from mmm_assets.core.inference.serialization import SCALED_TYPE

FACTOR = xr.DataArray([0.1, 0.2, 0.3], dims=("channel",))
PRIOR = Scaled(Prior("HalfNormal", sigma=Prior("LogNormal", mu=-0.18, sigma=0.6), dims="channel"), factor=FACTOR)


def test_the_librarys_own_entry_still_cannot_write_a_per_channel_factor():
    """When this fails, PyMC-Marketing writes the factor itself: drop core/inference/serialization.py."""
    with pytest.raises(TypeError, match="DataArray is not JSON serializable"):
        json.dumps(special_priors._serialize_scaled(PRIOR))


def test_a_scaled_prior_with_a_per_channel_factor_goes_through_json_and_back():
    written = json.dumps(serialization.serialize(PRIOR))
    assert json.loads(written)["__type__"] == SCALED_TYPE
    read = serialization.deserialize(json.loads(written))
    assert isinstance(read, Scaled) and read.dims == ("channel",)
    assert read.factor.dims == ("channel",) and np.asarray(read.factor) == pytest.approx(FACTOR.to_numpy())
    assert read.dist.to_dict() == PRIOR.dist.to_dict()
