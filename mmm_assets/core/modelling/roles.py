"""Variable roles: which columns the model reads, how each enters it, and the calendar's event columns.

Every explanatory variable has one role, set in the configuration (see ``config/roles_example.yaml``):

==========  =============================================  ==========  ==============  ==================
role        where it is declared                           carry-over  saturation      sign of the effect
==========  =============================================  ==========  ==============  ==================
paid        ``channels`` (synthetic ``role: paid``, the     learned     logistic        positive
            default; files: every channel not ``owned``)
owned       synthetic ``role: owned``; files ``owned``      learned     logistic        positive
competitor  synthetic ``competitors``; files                learned     none (linear)   negative
            ``competitors`` (a subset of ``controls``)
control     synthetic ``controls``; files ``controls``      optional    none (linear)   configurable (free)
event       ``model.calendar`` (column ``event_<name>``)   optional    none            configurable (free)
trend       ``model.trend: true``                          no          none            configurable (free)
==========  =============================================  ==========  ==============  ==================

Paid and owned media are the model's *channels* (PyMC-Marketing's adstock + saturation, positive ``saturation_beta``);
only paid channels are money, so budgets and currency ROAS apply to :attr:`MMMConfig.paid_channels`. Every other
variable is a *term*, modelled by :class:`mmm_assets.core.modelling.priors.RoleTerms`: the column divided by a fixed scale
(and, when centred, minus its training mean), optionally carried over by a normalised geometric adstock with a
learned rate, times a coefficient whose sign is constrained (HalfNormal for positive, minus a HalfNormal for
negative, Normal for free). ``model.terms.<name>`` overrides a term's sign, carry-over, centring and prior scale.

Why a competitor's carry-over is learned rather than configured: it is identified by the same weekly variation that
identifies the media carry-over (learned the same way, with a Beta prior, ``model.term_adstock_prior``), and a
configured rate would be a guess nobody can check; the posterior shows how well the data pin it down.

Yearly seasonality is PyMC-Marketing's Fourier term (``model.yearly_seasonality``). Calendar events are 0/1 columns
that :func:`with_calendar` adds to the feature frame before it is validated, so they are stored with the features
and reach out-of-sample predictions like any other column.

This module imports no PyMC: the feature step can call it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, EVENT_PREFIX, CalendarEvent, MMMConfig, Sign

WEEK = pd.Timedelta(days=7)

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


def event_indicators(dates: pd.Series | pd.DatetimeIndex, calendar: Mapping[str, CalendarEvent]) -> pd.DataFrame:
    """One 0/1 column ``event_<name>`` per event: 1 in the week holding an event date (week ``w`` holds the days
    ``w .. w + 6``), and in ``weeks_before`` / ``weeks_after`` weeks around it. Dates outside the weeks are ignored.
    Rows follow ``dates``; its weeks need not be sorted.
    """
    index = pd.DatetimeIndex(pd.to_datetime(dates))
    weeks = index.unique().sort_values()
    out = pd.DataFrame(index=range(len(index)))
    for name, event in calendar.items():
        flagged = np.zeros(len(weeks))
        for day in pd.DatetimeIndex(pd.to_datetime(event.dates)):
            at = int(weeks.searchsorted(day, side="right")) - 1
            if at < 0 or day >= weeks[at] + WEEK:
                continue
            flagged[max(0, at - event.weeks_before) : at + event.weeks_after + 1] = 1.0
        out[EVENT_PREFIX + name] = pd.Series(flagged, index=weeks).reindex(index).to_numpy()
    return out


def with_calendar(frame: pd.DataFrame, cfg: MMMConfig) -> pd.DataFrame:
    """``frame`` with the calendar's event columns added (a copy; other columns untouched).

    A pure function of the frame's ``date`` column and ``model.calendar``: call it on the weekly table before
    validating it, so the event columns are stored with the features.
    """
    if not cfg.model.calendar:
        return frame.copy()
    if DATE_COLUMN not in frame.columns:
        raise ValueError(f"the weekly table has no {DATE_COLUMN!r} column to place the calendar's events on")
    flags = event_indicators(frame[DATE_COLUMN], cfg.model.calendar)
    out = frame.copy()
    for column in flags.columns:
        out[column] = flags[column].to_numpy()
    return out
