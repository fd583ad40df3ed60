"""The media transforms' families, chosen by name: ``model.adstock`` / ``model.saturation`` (what is fitted) and
``data.synthetic.adstock`` / ``data.synthetic.saturation`` (what generated the data, with each channel's true
parameters).

The families are PyMC-Marketing's own components (built in :mod:`mmm_assets.core.transforms.media`); this module
only names them and their parameters, as the library names them, so the configuration needs no PyMC import.
``mmm_assets_tests/core/modelling/test_transforms.py`` fails when the library's names stop matching these.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmm_assets.core.config.base import _Strict

AdstockFamily = Literal["geometric", "delayed", "weibull_cdf", "weibull_pdf"]
SaturationFamily = Literal["logistic", "hill", "michaelis_menten", "tanh"]

#: Each adstock family's parameters, as PyMC-Marketing names them (the model's variables are ``adstock_<name>``).
ADSTOCK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "geometric": ("alpha",),
    "delayed": ("alpha", "theta"),
    "weibull_cdf": ("lam", "k"),
    "weibull_pdf": ("lam", "k"),
}
#: Each saturation family's parameters, as PyMC-Marketing names them (the model's variables are
#: ``saturation_<name>``).
SATURATION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "logistic": ("lam", "beta"),
    "hill": ("slope", "kappa", "beta"),
    "michaelis_menten": ("alpha", "lam"),
    "tanh": ("b", "c"),
}
#: The saturation parameter that is a channel's effect at saturation (the curve's ceiling, in target-scale units):
#: the one ``model.media_prior`` sets and a synthetic channel's ``beta`` gives.
SATURATION_CEILING: dict[str, str] = {"logistic": "beta", "hill": "beta", "michaelis_menten": "alpha", "tanh": "b"}


class AdstockSettings(_Strict):
    """The carry-over family and its longest lag."""

    family: AdstockFamily = Field(
        default="geometric",
        description="geometric (effect decays from the week of spend) | delayed (peaks theta weeks later) | "
        "weibull_cdf | weibull_pdf (Robyn's flexible decays; pdf can peak later).",
    )
    l_max: int | None = Field(
        default=None, ge=1, le=52, description="Longest carry-over in weeks; null = model.adstock_l_max."
    )


class SaturationSettings(_Strict):
    """The diminishing-returns family."""

    family: SaturationFamily = Field(
        default="logistic",
        description="logistic (concave from zero) | hill (S-shaped when slope > 1; Robyn's and Meridian's) | "
        "michaelis_menten | tanh.",
    )


def missing_parameters(family: str, given: dict[str, float], names: dict[str, tuple[str, ...]]) -> str | None:
    """What is wrong with ``given`` as the parameters of ``family`` (missing or unknown names), or None."""
    expected = set(names[family])
    missing, unknown = sorted(expected - set(given)), sorted(set(given) - expected)
    if not missing and not unknown:
        return None
    parts = [f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else ""]
    return f"{family} takes {list(names[family])}: " + ", ".join(p for p in parts if p)
