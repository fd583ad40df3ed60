"""How a ``Scaled`` prior is written into a saved model: a per-channel factor as JSON.

PyMC-Marketing 1.3.0 registers a serializer for pymc-extras' ``Scaled`` prior that copies its ``factor`` as it is
(``pymc_marketing/special_priors.py``, ``_serialize_scaled``). A factor per channel has to be an ``xarray.DataArray``
(the media's priors are labelled tensors), which ``json.dumps`` of the model's config cannot encode, so fitting a
model whose media ceilings share a scale (``model.media_prior.shared_scale_sd``) failed at its end. This registers,
through the library's public ``serialization.register``, the same entry with the factor encoded the way pymc-extras'
own ``Scaled.to_dict`` encodes it (a ``{"class": "DataArray", ...}`` mapping) and decoded back on load.
``mmm_assets_tests/core/inference/test_serialization.py`` fails when the library changes its entry, so this can be
dropped once the library encodes the factor itself.
"""

from __future__ import annotations

from typing import Any

from pymc_extras.deserialize import deserialize
from pymc_extras.prior import Scaled
from pymc_marketing import special_priors  # noqa: F401  (registers the library's own entry first, replaced below)
from pymc_marketing.serialization import serialization

#: The registry key of pymc-extras' ``Scaled``, as the library writes it into a saved model.
SCALED_TYPE = f"{Scaled.__module__}.{Scaled.__qualname__}"


def _serialize_scaled(prior: Scaled) -> dict[str, Any]:
    data = prior.to_dict()["data"]  # the factor as a list or a {"class": "DataArray", ...} mapping
    return {"__type__": SCALED_TYPE, "dist": data["dist"], "factor": data["factor"]}


def _deserialize_scaled(data: dict[str, Any], context: Any = None) -> Scaled:
    factor = data["factor"]
    return Scaled(dist=deserialize(data["dist"]), factor=deserialize(factor) if isinstance(factor, dict) else factor)


serialization.register(Scaled, serializer=_serialize_scaled, deserializer=_deserialize_scaled)
