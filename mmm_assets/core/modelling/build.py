"""Building the PyMC-Marketing MMM.

The model is PyMC-Marketing's ``MMM`` with the configured adstock and saturation families on the media (paid and
owned channels; geometric and logistic by default, :mod:`mmm_assets.core.transforms.media`), yearly
seasonality when configured, and :class:`mmm_assets.core.modelling.priors.RoleTerms`
for every non-media variable (competitors, controls, calendar events, the trend; see
:mod:`mmm_assets.core.modelling.roles`).

Scales: by default PyMC-Marketing divides the target and each channel by its maximum over the fitted weeks, so one
more week can move every parameter's meaning. :class:`ModelScales` fixes them instead: given to :func:`build_mmm` /
:func:`mmm_assets.core.modelling.fitting.fit` (e.g. the previous champion's, read with :func:`fitted_scales`) or
set in ``model.scaling``; a channel or term without a fixed scale still takes its maximum from the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from pymc_extras.prior import Prior, Scaled
from pymc_marketing.mmm import MMM
from pymc_marketing.mmm.components.saturation import SaturationTransformation
from pymc_marketing.mmm.scaling import DataDerivedScaling, FixedScaling, Scaling

from mmm_assets.core.config import DATE_COLUMN, SATURATION_CEILING, TARGET_COLUMN, MMMConfig
from mmm_assets.core.inference import serialization  # noqa: F401  (a saved model's shared media scale as JSON)
from mmm_assets.core.modelling.priors import NoControlCoefficients, RoleTerms, role_terms, spend_share_beta_sigma
from mmm_assets.core.modelling.roles import term_specs
from mmm_assets.core.modelling.spread import SPREADS_ATTR
from mmm_assets.core.transforms.media import adstock_transformation, saturation_transformation


def split_xy(features: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Model inputs (date, channels, controls) and the target series."""
    return features.drop(columns=[TARGET_COLUMN]), features[TARGET_COLUMN].rename(TARGET_COLUMN)

@dataclass(frozen=True)
class ModelScales:
    """What a model divides its data by. The same scales make consecutive refreshes' parameters comparable.

    ``target`` (target units) and ``channels`` (column units, per channel) are PyMC-Marketing's scaling; ``controls``
    and ``centers`` those of the non-media terms (:class:`mmm_assets.core.modelling.priors.RoleTerms`). None / a missing
    name = taken from the data (its maximum; the training mean for a centred term).
    """

    target: float | None = None
    channels: dict[str, float] | None = None
    controls: dict[str, float] = field(default_factory=dict)
    centers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The scales as plain numbers (for metadata and MLflow)."""
        return {"target": self.target, "channels": self.channels, "controls": self.controls, "centers": self.centers}

    @property
    def fixes_media(self) -> bool:
        """Whether the channels' scales are fixed (not derived from the data)."""
        return self.target is not None or self.channels is not None

def resolve_scales(cfg: MMMConfig, features: pd.DataFrame, scales: ModelScales | None = None) -> ModelScales | None:
    """The scales a fit uses: ``scales`` over ``model.scaling`` (the market's own, for a scenario narrowed to one);
    None when neither fixes anything (data maxima).

    A channel the given scales do not cover (e.g. one added since the champion) takes its maximum in ``features``.
    """
    configured = cfg.model.scaling.of_market(cfg.market) if cfg.model.scaling else None
    target = scales.target if scales is not None and scales.target is not None else None
    if target is None and configured is not None:
        target = configured.target
    channels = {**((configured.channels or {}) if configured else {}), **((scales.channels or {}) if scales else {})}
    controls = {**(configured.controls if configured else {}), **(scales.controls if scales else {})}
    centers = dict(scales.centers) if scales else {}
    if target is None and not channels and not controls and not centers:
        return None
    if channels:
        channels = {c: float(channels[c]) if c in channels else float(features[c].max()) for c in cfg.channels}
        channels = {c: v if v > 0 else 1.0 for c, v in channels.items()}
    known = set(cfg.controls)
    return ModelScales(
        target=target,
        channels=channels or None,
        controls={k: v for k, v in controls.items() if k in known},
        centers={k: v for k, v in centers.items() if k in known},
    )

def _scaling(scales: ModelScales | None) -> Scaling | None:
    if scales is None or not scales.fixes_media:
        return None
    data_max = DataDerivedScaling(method="max", dims=())
    return Scaling(
        target=FixedScaling(dims=(), value=float(scales.target)) if scales.target is not None else data_max,
        channel=FixedScaling(dims=(), value=dict(scales.channels)) if scales.channels is not None else data_max,
    )

def _saturation(
    cfg: MMMConfig, features: pd.DataFrame | None, scales: ModelScales | None
) -> SaturationTransformation:
    """The configured saturation with ``model.media_prior`` on its ceiling (logistic's and hill's ``beta``...; the
    library's priors without features).

    With independent HalfNormal ceilings the prior of the media's total tightens as 1/sqrt(channels): on realistic
    data at 20-30 channels its 94 % interval of the media's share of the KPI (0.11-0.25) excluded the truth
    (0.35-0.39). ``media_prior.shared_scale_sd`` scales every ceiling by one factor shared by the channels, which
    keeps the total as uncertain at 30 channels as at 3 (README "Many channels")."""
    family = cfg.model.saturation.family
    if cfg.model.media_prior.kind == "library" or features is None:
        return saturation_transformation(family)
    target_scale = scales.target if scales is not None and scales.target else float(features[TARGET_COLUMN].max())
    sigma = spend_share_beta_sigma(cfg, features, target_scale)
    sigma = xr.DataArray(sigma, dims=("channel",), coords={"channel": cfg.channels})
    shared = cfg.model.media_prior.shared_scale_sd
    if shared is None:
        return saturation_transformation(
            family, {SATURATION_CEILING[family]: Prior("HalfNormal", sigma=sigma, dims="channel")}
        )
    # ceiling[c] = sigma[c] * |z[c]| * s, s ~ LogNormal(-sd^2 / 2, sd) (mean 1) shared by the channels; the saved
    # model's config encodes the factor through core.inference.serialization
    scale = Prior("LogNormal", mu=-(shared**2) / 2, sigma=shared)
    return saturation_transformation(
        family, {SATURATION_CEILING[family]: Scaled(Prior("HalfNormal", sigma=scale, dims="channel"), factor=sigma)}
    )


def build_mmm(cfg: MMMConfig, scales: ModelScales | None = None, features: pd.DataFrame | None = None) -> MMM:
    """The configured (unbuilt) MMM: media, seasonality, the non-media terms, with ``scales`` fixed when given;
    ``features`` (what it will be fitted to) set the spend-share media prior (model.media_prior)."""
    specs = term_specs(cfg)
    mmm = MMM(
        date_column=DATE_COLUMN,
        channel_columns=cfg.channels,
        target_column=TARGET_COLUMN,
        adstock=adstock_transformation(cfg.model.adstock.family, cfg.model.adstock_l_max),
        saturation=_saturation(cfg, features, scales),
        adstock_first=cfg.model.adstock_first,
        time_varying_intercept=cfg.model.time_varying_intercept,
        control_columns=cfg.controls or None,
        yearly_seasonality=cfg.model.yearly_seasonality,
        scaling=_scaling(scales),
        model_config={"gamma_control": NoControlCoefficients()} if cfg.controls else None,
    )
    if specs:
        prior = cfg.model.term_adstock_prior
        mmm.add_mu_effect(
            RoleTerms.from_specs(
                specs,
                cfg.controls,
                cfg.model.adstock_l_max,
                (prior.alpha, prior.beta),
                scales.controls if scales else None,
                scales.centers if scales else None,
            )
        )
    return mmm

def fitted_scales(mmm: MMM) -> ModelScales:
    """The scales a fitted (or loaded) model used: pass them to the next fit to keep its parameters comparable."""
    data = mmm.idata.constant_data
    channel_scale = data["channel_scale"]
    terms = role_terms(mmm)
    columns = set(mmm.control_columns or [])
    return ModelScales(
        target=float(np.asarray(data["target_scale"]).reshape(-1)[0]),
        channels={str(c): float(channel_scale.sel(channel=c)) for c in channel_scale.coords["channel"].values},
        controls={k: v for k, v in (terms.scales if terms else {}).items() if k in columns},
        centers={k: v for k, v in (terms.centers if terms else {}).items() if k in columns},
    )

def fit_records(mmm: MMM) -> dict[str, dict]:
    """What a fitted model was scaled and pooled with, as JSON-ready records (the UI's metadata, MLflow artifacts):

    - ``model_scales``: the target's, channels' and controls' scales it divided by, in the shape ``model.scaling``
      (or a market's entry of ``model.scaling.markets``) takes, to fix them for later refreshes;
    - ``between_market_spreads``: a pooled market's spreads (learnt or stated, per parameter and channel), as the
      pooled model was fitted with them; absent for a market fitted on its own.
    """
    scales = fitted_scales(mmm)
    records = {"model_scales": {"target": scales.target, "channels": scales.channels, "controls": scales.controls}}
    spreads = mmm.idata.attrs.get(SPREADS_ATTR)
    return {**records, "between_market_spreads": json.loads(spreads)} if spreads else records


def free_parameters(mmm: MMM) -> list[str]:
    """The model's free random variables' names (what convergence diagnostics cover)."""
    return [rv.name for rv in mmm.model.free_RVs]
