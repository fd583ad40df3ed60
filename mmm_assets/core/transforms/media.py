"""The media transforms: PyMC-Marketing's adstock and saturation families, built from the configuration, and the
same functions evaluated on plain arrays (a fitted model's posterior draws, or a generator's true parameters).

Every curve the decisions, the lift-test report and the generator need comes from the transformation's own
``function`` (PyMC-Marketing's), compiled once per family and shape of inputs: no hand-written copy of a curve, so a
new family works everywhere it is listed in :mod:`mmm_assets.core.config.media`. Parameters are passed by the names
the library gives them (``alpha``, ``lam``, ``slope``...); a fitted model's draws of them are read through the
transformation's ``variable_mapping`` (``adstock_alpha``, ``saturation_lam``...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytensor
import pytensor.xtensor as ptx
from pymc_extras.prior import Prior
from pymc_marketing.mmm import (
    DelayedAdstock,
    GeometricAdstock,
    HillSaturation,
    LogisticSaturation,
    MichaelisMentenSaturation,
    TanhSaturation,
    WeibullCDFAdstock,
    WeibullPDFAdstock,
)
from pymc_marketing.mmm.components.adstock import AdstockTransformation
from pymc_marketing.mmm.components.saturation import SaturationTransformation

from mmm_assets.core.config import DATE_COLUMN
from mmm_assets.core.inference.compiling import QUICK_MODE

ADSTOCKS: dict[str, type[AdstockTransformation]] = {
    "geometric": GeometricAdstock,
    "delayed": DelayedAdstock,
    "weibull_cdf": WeibullCDFAdstock,
    "weibull_pdf": WeibullPDFAdstock,
}
SATURATIONS: dict[str, type[SaturationTransformation]] = {
    "logistic": LogisticSaturation,
    "hill": HillSaturation,
    "michaelis_menten": MichaelisMentenSaturation,
    "tanh": TanhSaturation,
}
SAMPLE = "sample"
SAMPLE_DIMS = ("chain", "draw")

Arrays = Mapping[str, np.ndarray]


def adstock_transformation(family: str, l_max: int) -> AdstockTransformation:
    """The library's normalised adstock of ``family`` (weights summing to 1, so a steady spend keeps its level)."""
    return ADSTOCKS[family](l_max=l_max, normalize=True)


def saturation_transformation(family: str, priors: dict[str, Prior] | None = None) -> SaturationTransformation:
    """The library's saturation of ``family``, with ``priors`` over its default priors."""
    return SATURATIONS[family](priors=priors) if priors else SATURATIONS[family]()


def family_of(transformation: AdstockTransformation | SaturationTransformation) -> str:
    """The configuration's name of a transformation's family (``geometric``, ``hill``...)."""
    table: Mapping[str, type] = ADSTOCKS if isinstance(transformation, AdstockTransformation) else SATURATIONS
    for name, cls in table.items():
        if type(transformation) is cls:
            return name
    raise ValueError(f"{type(transformation).__name__} is not a family this project builds ({sorted(table)})")


def parameter_draws(mmm, transformation, channel: str) -> dict[str, np.ndarray]:
    """A channel's posterior draws of a transformation's parameters, by the library's names: (chain x draw,)."""
    posterior = mmm.idata.posterior
    return {
        name: posterior[variable].sel(channel=channel).stack({SAMPLE: SAMPLE_DIMS}).to_numpy()
        for name, variable in transformation.variable_mapping.items()
    }


def _inputs(names: tuple[str, ...]) -> tuple[ptx.XTensorVariable, list[ptx.XTensorVariable]]:
    x = ptx.xtensor("x", dims=(SAMPLE, DATE_COLUMN), shape=(None, None))
    return x, [ptx.xtensor(name, dims=(SAMPLE,), shape=(None,)) for name in names]


@cache
def _compiled_adstock(family: str, l_max: int) -> Callable:
    adstock = adstock_transformation(family, l_max)
    names = tuple(adstock.variable_mapping)
    x, params = _inputs(names)
    out = adstock.function(x, **dict(zip(names, params, strict=True)), dim=DATE_COLUMN)
    return pytensor.function([x, *params], out.transpose(SAMPLE, DATE_COLUMN), mode=QUICK_MODE)


@cache
def _compiled_saturation(family: str) -> Callable:
    saturation = saturation_transformation(family)
    names = tuple(saturation.variable_mapping)
    x, params = _inputs(names)
    out = saturation.function(x, **dict(zip(names, params, strict=True)))
    return pytensor.function([x, *params], out.transpose(SAMPLE, DATE_COLUMN), mode=QUICK_MODE)


def _call(function: Callable, names: Mapping[str, str], x: np.ndarray, params: Arrays) -> np.ndarray:
    """Evaluate a compiled transformation: ``x`` (samples or 1, weeks), each parameter (samples,) or a scalar."""
    values = [np.atleast_1d(np.asarray(params[name], dtype=float)) for name in names]
    samples = max([len(v) for v in values] + [np.shape(x)[0] if np.ndim(x) == 2 else 1])
    x = np.broadcast_to(np.asarray(x, dtype=float).reshape(-1 if np.ndim(x) == 2 else 1, np.shape(x)[-1]),
                        (samples, np.shape(x)[-1]))
    return function(np.ascontiguousarray(x), *(np.broadcast_to(v, (samples,)).copy() for v in values))


def apply_adstock(adstock: AdstockTransformation, x: np.ndarray, params: Arrays) -> np.ndarray:
    """The adstock of ``x`` (weeks last) for each sample of ``params``: (samples, weeks)."""
    return _call(_compiled_adstock(family_of(adstock), adstock.l_max), adstock.variable_mapping, x, params)


def apply_saturation(saturation: SaturationTransformation, x: np.ndarray, params: Arrays) -> np.ndarray:
    """The saturation (ceiling included) of ``x`` for each sample of ``params``: (samples, points)."""
    return _call(_compiled_saturation(family_of(saturation)), saturation.variable_mapping, x, params)


def apply_media(
    adstock: AdstockTransformation,
    saturation: SaturationTransformation,
    adstock_first: bool,
    x: np.ndarray,
    adstock_params: Arrays,
    saturation_params: Arrays,
) -> np.ndarray:
    """The media response of the scaled spend ``x`` (weeks last) in the model's order: (samples, weeks)."""
    if adstock_first:
        return apply_saturation(saturation, apply_adstock(adstock, x, adstock_params), saturation_params)
    return apply_adstock(adstock, apply_saturation(saturation, x, saturation_params), adstock_params)


@dataclass(frozen=True)
class ChannelMedia:
    """One channel of a fitted model: its spend scale and the posterior draws of its transformations' parameters,
    to evaluate the model's own curves at spend it was not fitted on. Results are in target units."""

    model: object  # the fitted MMM
    channel: str
    scale: float
    target_scale: float
    adstock_params: dict[str, np.ndarray]
    saturation_params: dict[str, np.ndarray]

    @classmethod
    def of(cls, mmm, channel: str) -> ChannelMedia:
        """The channel's media of a fitted (or loaded) model."""
        data = mmm.idata.constant_data
        return cls(
            model=mmm,
            channel=channel,
            scale=float(data["channel_scale"].sel(channel=channel)),
            target_scale=float(np.asarray(data["target_scale"]).reshape(-1)[0]),
            adstock_params=parameter_draws(mmm, mmm.adstock, channel),
            saturation_params=parameter_draws(mmm, mmm.saturation, channel),
        )

    def response(self, spend: np.ndarray) -> np.ndarray:
        """Weekly contribution of a weekly spend series (spend units, weeks last), per draw: (samples, weeks)."""
        mmm = self.model
        return self.target_scale * apply_media(
            mmm.adstock, mmm.saturation, mmm.adstock_first, np.asarray(spend, float) / self.scale,
            self.adstock_params, self.saturation_params,
        )

    def steady(self, weekly_spend: np.ndarray) -> np.ndarray:
        """Weekly contribution of the same spend every week (a normalised adstock keeps its level), per draw:
        (samples, levels)."""
        return self.target_scale * apply_saturation(
            self.model.saturation, np.asarray(weekly_spend, float)[None, :] / self.scale, self.saturation_params
        )

    def window(self, spend: np.ndarray) -> WindowResponse:
        """The channel's total over the window of ``spend`` scaled by a multiple, for fast repeated evaluation."""
        mmm = self.model
        scaled = np.asarray(spend, float)[None, :] / self.scale
        if mmm.adstock_first:
            inputs = apply_adstock(mmm.adstock, scaled, self.adstock_params)
            weights = np.ones_like(inputs)
        else:
            # adstock is linear: the window's total of adstock(y) is y weighted by the share of each week's
            # carry-over that lands inside the window, the adstock of a constant 1 read backwards
            inputs = np.broadcast_to(scaled, (len(next(iter(self.saturation_params.values()))), scaled.shape[1]))
            weights = apply_adstock(mmm.adstock, np.ones_like(scaled), self.adstock_params)[:, ::-1]
        return WindowResponse(mmm.saturation, inputs, weights, self.saturation_params, self.target_scale)


@dataclass(frozen=True)
class WindowResponse:
    """A channel's total contribution over a window when its weekly spend pattern is scaled by ``multiple``."""

    saturation: SaturationTransformation
    inputs: np.ndarray  # (samples, weeks): what the saturation sees at multiple 1
    weights: np.ndarray  # (samples, weeks): how much of each saturated week counts in the window
    params: dict[str, np.ndarray]
    target_scale: float

    def total(self, multiple: float) -> np.ndarray:
        """Total contribution over the window (target units) per draw: (samples,)."""
        curve = apply_saturation(self.saturation, multiple * self.inputs, self.params)
        return self.target_scale * (curve * self.weights).sum(axis=1)
