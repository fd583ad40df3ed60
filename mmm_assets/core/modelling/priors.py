"""Prior beliefs in the model: signed effects of the non-media roles, and analysts' ROI priors.

Signed non-media terms
----------------------
:class:`RoleTerms` models every non-media variable (competitors, controls, calendar events, the trend; see
:mod:`mmm_assets.core.modelling.roles`). Term ``k`` contributes, in target-scale units,

    effect_k * carry_k((x_k - center_k) / scale_k)

``scale_k`` is fixed when the model is built (the configured ``model.scaling.controls`` value, else the column's
largest absolute, centred, value in the training weeks) and saved with the model, so predictions on new weeks use
the same one. ``carry_k`` is a normalised geometric adstock with a learned rate (Beta prior
``model.term_adstock_prior``) or the identity. The sign is a constraint of the prior: ``positive`` is
``HalfNormal(prior_sigma)``, ``negative`` minus one, ``free`` ``Normal(0, prior_sigma)``. The variables read the
columns PyMC-Marketing keeps for its controls (so they follow the data into every out-of-sample prediction); the
library's own unsigned control coefficient ``gamma_control`` is switched off (:class:`NoControlCoefficients`,
exactly zero) because :class:`RoleTerms` replaces it.

ROI priors
----------
An analyst states a belief about a channel's return, ``model.roi_priors.<channel>: {mean: m, sd: s}``, in business
units: outcome per unit of the channel's column (money for paid media) over the fitted weeks. The model's own
parameters (saturation ``beta`` and ``lam``, adstock ``alpha``) are not in those units, and the ROAS they imply is a
non-linear function of all three and of the spend pattern, so no prior on one of them states the belief faithfully.
The belief is therefore stated on the ROAS itself. With

    ROAS_c = sum_t contribution_c,t / sum_t spend_c,t        (contribution in target units, over the fitted weeks)

the model gains the term ``m ~ Normal(ROAS_c, s)``: PyMC-Marketing's cost-per-target calibration
(``MMM.add_cost_per_target_calibration(..., target_per_cost=True)``) with the believed value as the observation.
Its log-density is that of a ``Normal(m, s)`` prior on ``ROAS_c``. It multiplies the default priors on ``beta``,
``lam`` and ``alpha``, so the model's prior on ``ROAS_c`` is the product of the belief and the ROAS those priors
imply; theirs is wide (``beta`` is HalfNormal(2) in units of the target's scale), so a belief of ordinary precision
dominates it. The data then move it: :func:`roi_prior_report` gives, per channel with a prior, the prior mean and sd,
the posterior mean, sd and 94 % HDI of the same ``ROAS_c``, the shift (posterior mean minus prior mean, also in
prior sds) and the ratio of posterior to prior sd (well below 1: the data were informative; near 1: the estimate
is mostly the belief). Owned media may have an ROI prior too; their "ROAS" is outcome per unit of activity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pymc.dims as pmd
import pytensor.tensor as pt
import pytensor.xtensor as ptx
import xarray as xr
from pydantic import Field
from pymc_marketing.mmm import MMM
from pymc_marketing.mmm.additive_effect import MuEffect
from pymc_marketing.mmm.lift_test import add_cost_per_target_observations
from pymc_marketing.mmm.transformers import geometric_adstock
from pymc_marketing.serialization import SerializableBaseModel
from pytensor.xtensor import as_xtensor
from pytensor.xtensor.type import XTensorVariable

from mmm_assets.core.config import DATE_COLUMN, MARKET_COLUMN, TARGET_COLUMN, MMMConfig
from mmm_assets.core.modelling.posterior import mean_hdi
from mmm_assets.core.modelling.roles import TermSpec
from mmm_assets.core.variables import CONTRIBUTIONS

#: Prefix of the term variables; the effect registers ``terms_effect_contribution`` (PyMC-Marketing's convention).
PREFIX = "terms"
TERM_DIM = "term"
#: Name of the ROI-prior calibration term in the model.
ROI_PRIOR = "roi_prior"
#: The library's control data node, which the terms read.
CONTROL_DATA = "control_data"
CONTROL_DIM = "control"
#: Days per year, the unit of the trend.
DAYS_PER_YEAR = 365.25


def center_of(values: np.ndarray, centred: bool) -> float:
    """A term's centre: the mean of its training values when the term is centred, else 0."""
    return float(np.mean(values)) if centred else 0.0


def scale_of(values: np.ndarray, center: float) -> float:
    """A term's scale: its largest absolute training value around ``center`` (1 when it never moves from it)."""
    largest = float(np.abs(np.asarray(values, dtype=float) - center).max())
    return largest if largest > 0 else 1.0


class NoControlCoefficients(SerializableBaseModel):
    """A ``gamma_control`` that is exactly zero: :class:`RoleTerms` models the control columns instead.

    PyMC-Marketing multiplies its control columns by one unsigned coefficient vector; the columns are still given
    to it as controls so that it carries them into every prediction, but their effect is :class:`RoleTerms`'.
    """

    dims: tuple[str, ...] = (CONTROL_DIM,)

    def create_variable(self, name: str, xdist: bool = False) -> Any:
        """PyMC-Marketing's Prior interface: the term's coefficient, its sign enforced."""
        size = len(pm.modelcontext(None).coords[CONTROL_DIM])
        zeros = pt.zeros(size)
        return as_xtensor(zeros, dims=self.dims) if xdist else zeros


class RoleTerms(MuEffect):
    """Signed, optionally carried-over linear terms of the non-media variables (see the module docstring)."""

    names: list[str] = Field(description="Term names: control columns, then 'trend' when present.")
    roles: list[str]
    signs: list[str]
    adstock: list[bool]
    center: list[bool]
    prior_sigma: list[float]
    controls: list[str] = Field(description="The model's control columns, in the order of its control data.")
    l_max: int = Field(ge=1)
    alpha_prior: tuple[float, float] = Field(description="Beta(alpha, beta) prior of the learned carry-over rates.")
    trend: str | None = Field(default=None, description="Name of the trend term, if any.")
    scales: dict[str, float] = Field(default_factory=dict, description="Fixed scale per term (set at build).")
    centers: dict[str, float] = Field(default_factory=dict, description="Fixed centre per term (set at build).")
    trend_origin: str | None = Field(default=None, description="First training date (ISO), origin of the trend.")
    market_dim: str | None = Field(
        default=None,
        description="The pooled model's market dimension: each market has its own centres, scales and coefficients, "
        "the carry-over rates are shared; None in a single-market model.",
    )
    market_scales: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Pooled model: per market, the fixed scale per term (set at build)."
    )
    market_centers: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Pooled model: per market, the fixed centre per term (set at build)."
    )
    prefix: str = PREFIX

    @classmethod
    def from_specs(
        cls,
        specs: list[TermSpec],
        controls: list[str],
        l_max: int,
        alpha_prior: tuple[float, float],
        scales: dict[str, float] | None = None,
        centers: dict[str, float] | None = None,
    ) -> RoleTerms:
        """The signed terms of ``specs``, one per role."""
        return cls(
            names=[s.name for s in specs],
            roles=[s.role for s in specs],
            signs=[s.sign for s in specs],
            adstock=[s.adstock for s in specs],
            center=[s.center for s in specs],
            prior_sigma=[s.prior_sigma for s in specs],
            controls=list(controls),
            l_max=l_max,
            alpha_prior=alpha_prior,
            trend=next((s.name for s in specs if s.role == "trend"), None),
            scales=dict(scales or {}),
            centers=dict(centers or {}),
        )

    def for_market(self, market: str) -> RoleTerms:
        """A pooled model's terms as one market's single-market terms: its own centres and scales (fixed), the same
        variable names, so the market's slice of the pooled posterior is their posterior."""
        if self.market_dim is None or market not in self.market_scales:
            raise ValueError(f"no pooled terms of market {market!r} (markets: {sorted(self.market_scales)})")
        return self.model_copy(update={
            "market_dim": None, "market_scales": {}, "market_centers": {},
            "scales": dict(self.market_scales[market]), "centers": dict(self.market_centers[market]),
        })

    # -- data ---------------------------------------------------------------------------------------------------
    def _trend_name(self) -> str:
        return f"{self.prefix}_trend_years"

    def _years(self, dates: Any) -> np.ndarray:
        index = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
        assert self.trend_origin is not None
        return ((index - pd.Timestamp(self.trend_origin)).days / DAYS_PER_YEAR).to_numpy(dtype=float)

    def create_data(self, mmm: Any) -> None:
        """PyMC-Marketing's MuEffect interface: register the terms' data in the model."""
        if self.trend is None:
            return
        dates = mmm.model.coords[DATE_COLUMN]
        if self.trend_origin is None:
            self.trend_origin = pd.Timestamp(np.asarray(dates)[0]).isoformat()
        pmd.Data(self._trend_name(), self._years(dates), dims=(DATE_COLUMN,))

    def set_data(self, mmm: Any, model: pm.Model, X: xr.Dataset) -> None:
        """PyMC-Marketing's MuEffect interface: swap in new data (out-of-sample predictions)."""
        if self.trend is not None:
            pm.set_data({self._trend_name(): self._years(model.coords[DATE_COLUMN])}, model=model)

    def _fix_scales(self, mmm: Any) -> None:
        """Centre and scale of every term (of every market, pooled), from the training data unless already fixed."""
        data = mmm.xarray_dataset["_control"] if self.controls else None
        if self.market_dim is None:
            groups = [({}, self.centers, self.scales)]
        else:
            groups = [({self.market_dim: m}, self.market_centers.setdefault(m, {}), self.market_scales.setdefault(m, {}))
                      for m in self._markets(mmm.model)]
        for where, centers, scales in groups:
            for name, centred in zip(self.names, self.center):
                if name == self.trend:
                    centers.setdefault(name, 0.0)
                    scales.setdefault(name, 1.0)  # the trend is in years already
                    continue
                if name in centers and name in scales:
                    continue  # fixed: configured, or from the market's own weeks (pooled model, modelling.panel)
                assert data is not None
                values = np.asarray(data.sel({CONTROL_DIM: name, **where}).values, dtype=float)
                centers.setdefault(name, center_of(values, centred))
                scales.setdefault(name, scale_of(values, centers[name]))

    def _dims(self) -> tuple[str, ...]:
        """The dims of a term's input besides ``date`` and ``term``: the market's in a pooled model."""
        return (self.market_dim,) if self.market_dim else ()

    def _markets(self, model: pm.Model) -> list[str]:
        """The pooled model's markets in its coordinate's order; none in a single-market model."""
        return [str(m) for m in model.coords[self.market_dim]] if self.market_dim else []

    # -- effect -------------------------------------------------------------------------------------------------
    def _inputs(self, mmm: Any) -> pt.TensorVariable:
        """(date, [market,] term) array of the scaled (and centred) inputs, before carry-over."""
        columns = []
        model = mmm.model
        controls = None
        if self.controls:
            data = model[CONTROL_DATA]
            order = [data.type.dims.index(d) for d in (DATE_COLUMN, *self._dims(), CONTROL_DIM)]
            controls = data.values if order == sorted(order) else data.values.transpose(order)
        markets = self._markets(model)
        for name in self.names:
            if name == self.trend:
                raw = model[self._trend_name()].values
                raw = raw[:, None] if markets else raw  # the same years in every market
            else:
                raw = controls[..., self.controls.index(name)]
            if markets:
                center = np.array([self.market_centers[m][name] for m in markets])
                scale = np.array([self.market_scales[m][name] for m in markets])
            else:
                center, scale = self.centers[name], self.scales[name]
            columns.append((raw - center) / scale)
        return pt.stack(columns, axis=-1)

    def _coefficients(self, model: pm.Model) -> XTensorVariable:
        """The (term,) coefficients: the signed terms' magnitudes times their directions and the free terms' values.

        Built with xtensor operations only (rename, concat, isel), each part keeping its own dims until it is renamed
        to ``term``, and with no operation that does nothing (a concat of one part, an identity reordering, a product
        with +1): PyTensor 3.3 removes such no-ops and then rewrites ``xtensor(tensor(x))`` into ``x`` without checking
        that ``x`` has the same dims; when it has not (a model whose terms are all free, or all positive, so that
        ``term`` would be exactly ``term_free``), every compiled function printed a ``useless_xtensor_from_tensor``
        traceback (issue 23).
        """
        signed = [i for i, sign in enumerate(self.signs) if sign != "free"]
        free = [i for i, sign in enumerate(self.signs) if sign == "free"]
        parts: list[XTensorVariable] = []
        order: list[int] = []
        sigma = np.asarray(self.prior_sigma, dtype=float)
        if signed:
            dim = f"{TERM_DIM}_signed"
            model.add_coord(dim, [self.names[i] for i in signed])
            magnitude = pmd.HalfNormal(f"{self.prefix}_magnitude", sigma=as_xtensor(sigma[signed], dims=(dim,)),
                                       **self._per_market(dim))
            direction = np.array([1.0 if self.signs[i] == "positive" else -1.0 for i in signed])
            part = magnitude if (direction > 0).all() else magnitude * as_xtensor(direction, dims=(dim,))
            parts.append(part.rename({dim: TERM_DIM}))
            order += signed
        if free:
            dim = f"{TERM_DIM}_free"
            model.add_coord(dim, [self.names[i] for i in free])
            value = pmd.Normal(f"{self.prefix}_free", mu=0.0, sigma=as_xtensor(sigma[free], dims=(dim,)),
                               **self._per_market(dim))
            parts.append(value.rename({dim: TERM_DIM}))
            order += free
        coefficients = parts[0] if len(parts) == 1 else ptx.concat(parts, dim=TERM_DIM)
        if order != sorted(order):
            coefficients = coefficients.isel({TERM_DIM: np.argsort(order)})
        return coefficients

    def _per_market(self, dim: str) -> dict[str, tuple[str, ...]]:
        """A coefficient's ``dims`` argument: one per market and ``dim`` in a pooled model, else its prior's own
        (not restated: an argument that changes nothing is one of the no-ops of :meth:`_coefficients`)."""
        return {"dims": (*self._dims(), dim)} if self.market_dim else {}

    def create_effect(self, mmm: Any) -> XTensorVariable:
        """PyMC-Marketing's MuEffect interface: the terms' contribution to the mean."""
        model: pm.Model = mmm.model
        self._fix_scales(mmm)
        model.add_coord(TERM_DIM, self.names)
        inputs = self._inputs(mmm)
        carried = [i for i, flag in enumerate(self.adstock) if flag]
        if carried:
            dim = f"{TERM_DIM}_carryover"
            model.add_coord(dim, [self.names[i] for i in carried])
            a, b = self.alpha_prior
            alpha = pmd.Beta(f"{self.prefix}_adstock_alpha", alpha=a, beta=b, dims=(dim,))
            adstocked = geometric_adstock(
                as_xtensor(inputs[..., carried], dims=(DATE_COLUMN, *self._dims(), dim)),
                alpha=alpha,
                l_max=self.l_max,
                dim=DATE_COLUMN,
                normalize=True,
            ).transpose(DATE_COLUMN, *self._dims(), dim)
            columns = [inputs[..., i] for i in range(len(self.names))]
            for k, i in enumerate(carried):
                columns[i] = adstocked.values[..., k]
            inputs = pt.stack(columns, axis=-1)
        effect = pmd.Deterministic(f"{self.prefix}_effect", self._coefficients(model))
        contribution = pmd.Deterministic(
            f"{self.prefix}_contribution", as_xtensor(inputs, dims=(DATE_COLUMN, *self._dims(), TERM_DIM)) * effect
        )
        return pmd.Deterministic(f"{self.prefix}_effect_contribution", contribution.sum(dim=TERM_DIM))


def role_terms(mmm: MMM) -> RoleTerms | None:
    """The model's :class:`RoleTerms`, or None when it has no non-media terms."""
    return next((effect for effect in mmm.mu_effects if isinstance(effect, RoleTerms)), None)


def term_estimates(mmm: MMM) -> pd.DataFrame:
    """Per non-media term: its role, sign constraint, effect per unit of the column in target units (per year for
    the trend, per flagged week for an event), mean and 94 % HDI, the probability of a positive effect, the learned
    carry-over rate (mean and HDI, NaN when not carried over) and the mean weekly contribution in target units.
    """
    terms = role_terms(mmm)
    if terms is None:
        return pd.DataFrame(
            columns=["term", "role", "sign", "effect_per_unit", "hdi_low", "hdi_high", "p_positive",
                     "adstock_alpha", "alpha_hdi_low", "alpha_hdi_high", "contribution_mean", "scale"]
        )
    posterior = mmm.idata.posterior
    target_scale = float(np.asarray(mmm.idata.constant_data["target_scale"]).reshape(-1)[0])
    scales = xr.DataArray([terms.scales[n] for n in terms.names], dims=TERM_DIM, coords={TERM_DIM: terms.names})
    per_unit = posterior[f"{terms.prefix}_effect"] * target_scale / scales
    frame = mean_hdi(per_unit).rename(columns={"mean": "effect_per_unit"})
    frame.insert(0, "sign", terms.signs)
    frame.insert(0, "role", terms.roles)
    frame.insert(0, "term", terms.names)
    frame["p_positive"] = (per_unit > 0).mean(("chain", "draw")).to_numpy()
    frame[["adstock_alpha", "alpha_hdi_low", "alpha_hdi_high"]] = np.nan
    name = f"{terms.prefix}_adstock_alpha"
    if name in posterior:
        alpha = mean_hdi(posterior[name]).to_numpy()
        carried = [i for i, flag in enumerate(terms.adstock) if flag]
        frame.loc[carried, ["adstock_alpha", "alpha_hdi_low", "alpha_hdi_high"]] = alpha
    contribution = posterior[f"{terms.prefix}_contribution"] * target_scale
    frame["contribution_mean"] = contribution.mean(("chain", "draw", DATE_COLUMN)).to_numpy()
    frame["scale"] = scales.to_numpy()
    return frame


# -- The media prior ------------------------------------------------------------------------------------------------
#: Smallest share of the media's expected effect a channel's prior gets (as a fraction of an equal split), so a
#: channel with little spend is not held at zero by its prior alone.
MIN_SHARE_OF_EQUAL_SPLIT = 0.25


def spend_share_beta_sigma(cfg: MMMConfig, features: pd.DataFrame, target_scale: float) -> np.ndarray:
    """The HalfNormal scale of each channel's saturation ``beta`` (target-scale units) under ``model.media_prior``
    spend_share: the expected ``beta`` of channel c is ``media_share * mean(y) / target_scale * w_c``, so the
    channels' expected effects at saturation add up to ``media_share`` of the mean KPI. ``w_c``: a paid channel's
    share of the paid spend times the paid channels' share of all channels, an owned channel (activity, not money)
    an equal share; at least MIN_SHARE_OF_EQUAL_SPLIT of an equal share, then renormalised."""
    channels, paid = cfg.channels, set(cfg.paid_channels)
    n = len(channels)
    spend = features[[c for c in channels if c in paid]].sum()
    weights = np.array(
        [spend[c] / spend.sum() * len(paid) / n if c in paid and spend.sum() > 0 else 1.0 / n for c in channels]
    )
    weights = np.maximum(weights, MIN_SHARE_OF_EQUAL_SPLIT / n)
    weights = weights / weights.sum()
    expected = cfg.model.media_prior.media_share * float(features[TARGET_COLUMN].mean()) / target_scale * weights
    return expected / np.sqrt(2.0 / np.pi)  # a HalfNormal(sigma) has mean sigma * sqrt(2 / pi)


# -- ROI priors ---------------------------------------------------------------------------------------------------
def roi_prior_table(cfg: MMMConfig) -> pd.DataFrame:
    """The configured ROI priors as PyMC-Marketing's ROAS calibration table: channel, roas, sigma."""
    rows = [{"channel": c, "roas": p.mean, "sigma": p.sd} for c, p in cfg.model.roi_priors.items()]
    return pd.DataFrame(rows, columns=["channel", "roas", "sigma"])


def add_roi_priors(
    mmm: MMM, cfg: MMMConfig, X: pd.DataFrame, markets: Sequence[str] = (), own_weeks: XTensorVariable | None = None
) -> list[str]:
    """Add the ROI priors of ``cfg`` to a built model (``X``: the inputs it was built with); the channels covered.

    Needs ``channel_contribution_original_scale`` registered first (the ROAS is computed from it). In the pooled
    model (``markets``: its markets) the belief is stated on every market's own ROAS, one term per market and channel
    (PyMC-Marketing's calibration over the model's market dimension), so each market's view reports its own.
    ``own_weeks``: a pooled model whose markets cover different weeks, 1 on each market's own weeks and 0 on its
    padding (:mod:`mmm_assets.core.modelling.panel`); the ROAS is then over the market's own weeks, as its view
    reports it: the library's calibration would also count, after a market's last week, the carry-over of its spend
    into the padded weeks. The same calibration term, built by the library's own function over masked contributions.
    """
    table = roi_prior_table(cfg)
    if table.empty:
        return []
    if markets:
        table = pd.concat([table.assign(**{MARKET_COLUMN: market}) for market in markets], ignore_index=True)
    if own_weeks is None:
        mmm.add_cost_per_target_calibration(
            data=X,
            calibration_data=table,
            name_prefix=ROI_PRIOR,
            target_column="roas",
            target_per_cost=True,
        )
    else:  # the identity link's ROAS (mmm.add_cost_per_target_calibration's, with a Normal likelihood) on own weeks
        add_cost_per_target_observations(
            calibration_df=table,
            model=mmm.model,
            cost_value=mmm.model["channel_data"] * own_weeks,
            target_value=mmm.model[CONTRIBUTIONS] * own_weeks,
            target_column="roas",
            name_prefix=ROI_PRIOR,
            target_per_cost=True,
        )
    return list(dict.fromkeys(table["channel"]))


def roas_of(contribution: xr.DataArray, spend: xr.DataArray) -> xr.DataArray:
    """Total contribution / total spend per channel (and per draw); missing (NaN) for a channel with no spend."""
    return contribution / spend.where(spend > 0)


def posterior_roas(mmm: MMM) -> xr.DataArray:
    """Each channel's ROAS over the fitted weeks, per posterior draw: total contribution / total spend."""
    return roas_of(mmm.idata.posterior[CONTRIBUTIONS].sum(DATE_COLUMN),
                   mmm.idata.constant_data["channel_data"].sum(DATE_COLUMN))


def roi_prior_report(mmm: MMM, cfg: MMMConfig) -> pd.DataFrame:
    """Per channel with an ROI prior: the prior (mean, sd) and what the data made of it.

    Columns: ``channel, prior_mean, prior_sd, posterior_mean, posterior_sd, hdi_low, hdi_high, shift, shift_sd,
    sd_ratio, prior_in_hdi`` (``shift`` = posterior mean - prior mean; ``shift_sd`` = shift / prior sd; ``sd_ratio``
    = posterior sd / prior sd; ``prior_in_hdi``: the prior mean lies in the posterior's 94 % HDI).
    """
    columns = ["channel", "prior_mean", "prior_sd", "posterior_mean", "posterior_sd", "hdi_low", "hdi_high",
               "shift", "shift_sd", "sd_ratio", "prior_in_hdi"]
    priors = cfg.model.roi_priors
    if not priors:
        return pd.DataFrame(columns=columns)
    roas = posterior_roas(mmm).sel(channel=list(priors))
    frame = mean_hdi(roas).rename(columns={"mean": "posterior_mean"})
    frame.insert(0, "channel", list(priors))
    frame["prior_mean"] = [p.mean for p in priors.values()]
    frame["prior_sd"] = [p.sd for p in priors.values()]
    frame["posterior_sd"] = roas.std(("chain", "draw")).to_numpy()
    frame["shift"] = frame["posterior_mean"] - frame["prior_mean"]
    frame["shift_sd"] = frame["shift"] / frame["prior_sd"]
    frame["sd_ratio"] = frame["posterior_sd"] / frame["prior_sd"]
    frame["prior_in_hdi"] = (frame["hdi_low"] <= frame["prior_mean"]) & (frame["prior_mean"] <= frame["hdi_high"])
    return frame[columns]
