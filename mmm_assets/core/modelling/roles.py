"""Variable roles: which columns the model reads and how each enters it.

Every explanatory variable has one role, set in the configuration (see ``config/roles_example.yaml``):

==========  =============================================  ==========  ==============  ==================
role        where it is declared                           carry-over  saturation      sign of the effect
==========  =============================================  ==========  ==============  ==================
paid        ``channels`` (synthetic ``role: paid``, the     learned     configured      positive
            default; files: every channel not ``owned``)
owned       synthetic ``role: owned``; files ``owned``      learned     configured      positive
competitor  synthetic ``competitors``; files                learned     none (linear)   negative
            ``competitors`` (a subset of ``controls``)
control     synthetic ``controls``; files ``controls``      optional    none (linear)   configurable (free)
event       ``model.calendar`` (column ``event_<name>``)   optional    none            configurable (free)
trend       ``model.trend: true``                          no          none            configurable (free)
==========  =============================================  ==========  ==============  ==================

Paid and owned media are the model's *channels* (PyMC-Marketing's adstock + saturation families, a positive effect);
only paid channels are money, so budgets and currency ROAS apply to :attr:`MMMConfig.paid_channels`. Every other
variable is a *term*, modelled by :class:`mmm_assets.core.modelling.priors.RoleTerms`: the column divided by a fixed
scale (and, when centred, minus its training mean), optionally carried over by a normalised geometric adstock with a
learned rate, times a coefficient whose sign is constrained (HalfNormal for positive, minus a HalfNormal for
negative, Normal for free). ``model.terms.<name>`` overrides a term's sign, carry-over, centring and prior scale.

Why a competitor's carry-over is learned rather than configured: it is identified by the same weekly variation that
identifies the media carry-over (learned the same way, with a Beta prior, ``model.term_adstock_prior``), and a
configured rate would be a guess nobody can check; the posterior shows how well the data pin it down.

Yearly seasonality is PyMC-Marketing's Fourier term (``model.yearly_seasonality``). Calendar events are 0/1 columns
that :func:`mmm_assets.core.data.calendar.with_calendar` adds to the feature frame before it is validated, so they
are stored with the features and reach out-of-sample predictions like any other column.

This module imports no PyMC: the feature step can call it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmm_assets.core.config import ADSTOCK_PARAMETERS, EVENT_PREFIX, SATURATION_PARAMETERS, MMMConfig, Sign

#: Role defaults: (sign, carry-over, centred). Centring a control (e.g. a price near 10) keeps its coefficient from
#: fighting the intercept; competitors and events are not centred so their contribution is relative to "none".
ROLE_DEFAULTS: dict[str, tuple[Sign, bool, bool]] = {
    "competitor": ("negative", True, False),
    "control": ("free", False, True),
    "event": ("free", False, False),
    "trend": ("free", False, False),
}


@dataclass(frozen=True)
class TermSpec:
    """How one non-media variable enters the model (its role's defaults with ``model.terms`` laid over them)."""

    name: str
    role: str
    sign: Sign
    adstock: bool
    center: bool
    prior_sigma: float


def term_specs(cfg: MMMConfig) -> list[TermSpec]:
    """The model's non-media terms in the order of ``cfg.controls`` (then the trend), with their settings."""
    specs = []
    for name, role in cfg.term_roles.items():
        sign, adstock, center = ROLE_DEFAULTS[role]
        if role == "event":
            sign = cfg.model.calendar[name.removeprefix(EVENT_PREFIX)].sign
        given = cfg.model.terms.get(name)
        if given is not None:
            sign = given.sign or sign
            adstock = adstock if given.adstock is None else given.adstock
            center = center if given.center is None else given.center
        sigma = given.prior_sigma if given is not None and given.prior_sigma is not None else cfg.model.term_prior_sigma
        specs.append(TermSpec(name, role, sign, adstock, center, sigma))
    return specs


def parameter_counts(cfg: MMMConfig) -> dict[str, int]:
    """The free (sampled) scalars of the market's own model, by group: what the weekly data have to pin down.

    Counted from the configuration, so the feature checks can call it without building the model: per channel its
    adstock and saturation family's parameters (geometric + logistic: 3); the intercept (a time-varying one: its level
    and its Gaussian process's amplitude and length scale; the process's basis coefficients are shrunk by its prior,
    not free); the noise sigma; two Fourier coefficients per order of the yearly seasonality; one coefficient per
    non-media term, and one carry-over rate per term that is carried over. ROI priors and lift tests add information,
    not parameters. The pooled model's hierarchy is not counted.
    """
    specs = term_specs(cfg)
    return {
        "media": len(cfg.channels) * (
            len(ADSTOCK_PARAMETERS[cfg.model.adstock.family]) + len(SATURATION_PARAMETERS[cfg.model.saturation.family])
        ),
        "intercept": 3 if cfg.model.time_varying_intercept else 1,
        "noise": 1,
        "seasonality": 2 * (cfg.model.yearly_seasonality or 0),
        "terms": len(specs),
        "term_carryover": sum(spec.adstock for spec in specs),
    }
