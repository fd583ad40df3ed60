"""The pooled model's panel: every market's weeks stacked into one grid, markets that cover different weeks padded.

PyMC-Marketing's ``MMM`` with a market dimension needs a balanced panel, one cell per week and market, and fills a
missing cell with 0 (its ``build_model``), which it would fit as an observed zero. Real geos start later (a region
opened) or end earlier, and the library has no way to leave cells out of its likelihood (its open issue
pymc-labs/pymc-marketing#1588, "handle unbalanced panels"; ``MaskedPrior`` masks parameters, not observations). So
:func:`stack_panel` stacks the markets over the union of their weeks and pads each market's missing weeks with values
that change nothing the model computes from its own weeks:

- spend 0: no contribution, and no carry-over into the market's first real week (a separate model sees no spend
  before its first week either); a maximum of non-negative spend is unchanged, so the per-market channel scale is
  the one of the market's own weeks;
- each control at its term's centre (:class:`~mmm_assets.core.modelling.priors.RoleTerms`: the mean of the market's
  own weeks for a centred term, else 0), so the term's input there is exactly 0 and carries nothing over, as before
  a separate model's first week; the centres and scales themselves are computed over the market's own weeks;
- the target at the mean of the market's own target: a placeholder inside the market's range, so its maximum (the
  target scale) is its own weeks' and any likelihood's support holds.

:class:`PaddedLikelihood` then takes the padded cells out of the likelihood: it is the library's likelihood (the same
``y`` variable over the whole grid, so shapes, posterior predictive and every library method stay the library's)
plus a ``pm.Potential`` that subtracts the padded cells' log-density, so they contribute nothing to the posterior
(the model's log-probability does not change with the placeholder's value; tested). It is part of the model's
configuration, saved with it, so a reloaded model is masked the same way and still knows each market's own weeks
(:func:`market_span`), which the market's view of the pooled model is cut to.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.deserialize import deserialize
from pymc_extras.prior import Prior
from pymc_marketing.mmm import MMM
from pymc_marketing.mmm.scaling import DataDerivedScaling, FixedScaling, Scaling
from pymc_marketing.serialization import serialization
from pytensor.xtensor import as_xtensor
from pytensor.xtensor.type import XTensorVariable

from mmm_assets.core.config import DATE_COLUMN, MARKET_COLUMN, TARGET_COLUMN
from mmm_assets.core.errors import InputError, day, examples
from mmm_assets.core.modelling.build import ModelScales
from mmm_assets.core.modelling.priors import RoleTerms, center_of, role_terms, scale_of

WEEK = pd.Timedelta(days=7)
#: Suffix of the potential that takes the padded cells out of the likelihood (``y_padded_cells``).
PADDED_SUFFIX = "_padded_cells"
#: PyMC's warning when a model with a potential is sampled forward. The padding potential only cancels the padded
#: cells' own likelihood terms: the predictive of ``y`` given the parameters is the likelihood's, so it is not biased.
POTENTIAL_WARNING = "The effect of Potentials on other parameters is ignored during posterior predictive sampling"


@dataclass(frozen=True)
class Panel:
    """Every market over the union of their weeks, with what the padding needs to know."""

    frame: pd.DataFrame
    spans: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    centers: dict[str, dict[str, float]] = field(default_factory=dict)
    scales: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def weeks(self) -> pd.DatetimeIndex:
        """The union of the markets' weeks."""
        return pd.DatetimeIndex(sorted(self.frame[DATE_COLUMN].unique()))

    @property
    def padded(self) -> bool:
        """Whether some market covers fewer weeks than the panel."""
        weeks = self.weeks
        return any((first, last) != (weeks[0], weeks[-1]) for first, last in self.spans.values())


def _problems(frames: Mapping[str, pd.DataFrame], columns: list[str], channels: list[str]) -> list[str]:
    """What keeps the markets' frames from forming one panel, each naming its market."""
    problems = []
    for market, frame in frames.items():
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            problems.append(f"market {market!r}: column(s) {absent} missing (it has {list(frame.columns)})")
            continue
        if frame[columns].isna().any().any():
            holes = [c for c in columns if frame[c].isna().any()]
            problems.append(f"market {market!r}: empty cells in column(s) {holes}; give every market every column")
        silent = [c for c in channels if not (frame[c] != 0).any()]
        if silent:
            problems.append(
                f"market {market!r}: column(s) {silent} are zero in every week, so the market's max scaling is "
                "undefined; drop the column from the scenario or fit the markets separately"
            )
        dates = pd.DatetimeIndex(frame[DATE_COLUMN])
        steps = dates.to_series().diff().dropna()
        if len(dates) == 0:
            problems.append(f"market {market!r}: no weeks")
        elif not (steps == WEEK).all():
            odd = [day(d) for d, step in zip(dates[1:], steps) if step != WEEK]
            problems.append(
                f"market {market!r} covers {day(dates.min())}..{day(dates.max())} ({len(dates)} weeks) but not as "
                f"consecutive weeks (a gap or repeat before {examples(odd)}); the pooled model takes a market's weeks "
                "from its first to its last without gaps"
            )
    if problems:
        return problems
    firsts = {m: pd.Timestamp(f[DATE_COLUMN].iloc[0]) for m, f in frames.items()}
    reference, start = min(firsts.items(), key=lambda item: item[1])
    off_grid = [f"{m!r} (weeks from {day(d)})" for m, d in firsts.items() if (d - start) % WEEK]
    if off_grid:
        problems.append(
            f"market(s) {', '.join(off_grid)} are not on the weekly grid of market {reference!r} (weeks from "
            f"{day(start)}): the pooled model needs every market's weeks to start on the same weekday"
        )
    spans = sorted((pd.Timestamp(f[DATE_COLUMN].iloc[0]), pd.Timestamp(f[DATE_COLUMN].iloc[-1]), m)
                   for m, f in frames.items())
    reach = spans[0][1]
    for first, last, market in spans[1:]:
        if first > reach + WEEK:
            problems.append(
                f"no market covers the weeks {day(reach + WEEK)}..{day(first - WEEK)} before market {market!r} "
                "starts: the pooled model needs the markets' weeks to join up without a gap"
            )
        reach = max(reach, last)
    return problems


def stack_panel(
    frames: Mapping[str, pd.DataFrame], columns: list[str], channels: list[str] | None = None,
    terms: RoleTerms | None = None,
) -> Panel:
    """One long frame (``market`` first) over the union of the markets' weeks, each market's missing weeks padded
    (see the module docstring); ``terms``: the model's non-media terms, whose centres and scales are computed over
    each market's own weeks.

    ``columns`` are the model's columns (date, target, channels, controls); ``channels`` those scaled by their
    maximum in each market, which must not be zero in every week (default: every column but date and target).
    Raises :class:`InputError` naming the market and what is wrong when the markets cannot form one panel.
    """
    if len(frames) < 2:
        raise InputError(f"pooling needs at least two markets, got {sorted(frames)}; fit a single market separately")
    scaled = channels if channels is not None else [c for c in columns if c not in (DATE_COLUMN, TARGET_COLUMN)]
    problems = _problems(frames, columns, scaled)
    if problems:
        bullets = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"the markets' feature tables cannot be pooled:\n{bullets}")
    union = pd.DatetimeIndex(sorted(set().union(*(set(f[DATE_COLUMN]) for f in frames.values()))))
    centred = dict(zip(terms.names, terms.center)) if terms is not None else {}
    controls = [c for c in columns if c not in (DATE_COLUMN, TARGET_COLUMN) and c not in scaled]
    parts, spans, centers, scales = [], {}, {}, {}
    for market, frame in frames.items():
        own = frame[columns].reset_index(drop=True)
        spans[market] = (pd.Timestamp(own[DATE_COLUMN].iloc[0]), pd.Timestamp(own[DATE_COLUMN].iloc[-1]))
        centers[market] = {c: center_of(own[c].to_numpy(float), centred[c]) for c in controls if c in centred}
        scales[market] = {c: scale_of(own[c].to_numpy(float), centers[market][c]) for c in centers[market]}
        missing = union.difference(pd.DatetimeIndex(own[DATE_COLUMN]))
        if len(missing):
            pad = pd.DataFrame({DATE_COLUMN: missing, TARGET_COLUMN: float(own[TARGET_COLUMN].mean())})
            for column in [*scaled, *controls]:
                pad[column] = centers[market].get(column, 0.0) if column in controls else 0.0
            own = pd.concat([own, pad[columns]], ignore_index=True).sort_values(DATE_COLUMN, ignore_index=True)
        parts.append(own.assign(**{MARKET_COLUMN: market}))
    stacked = pd.concat(parts, ignore_index=True)
    return Panel(stacked[[MARKET_COLUMN, *columns]], spans, centers, scales)


def stack_markets(
    frames: Mapping[str, pd.DataFrame], columns: list[str], channels: list[str] | None = None
) -> pd.DataFrame:
    """The long frame of :func:`stack_panel` (no non-media terms)."""
    return stack_panel(frames, columns, channels).frame


class PaddedLikelihood(Prior):
    """A likelihood that leaves each market's padded weeks out (see the module docstring).

    ``spans``: per market, its first and last own week (ISO dates); every other cell of the grid is padding.
    """

    def __init__(self, distribution: str, *, spans: Mapping[str, tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(distribution, **kwargs)
        self.spans = {str(m): (str(first), str(last)) for m, (first, last) in (spans or {}).items()}

    @classmethod
    def around(cls, likelihood: Prior, spans: Mapping[str, tuple[Any, Any]]) -> PaddedLikelihood:
        """``likelihood`` (the library's, any family) with the padded cells of ``spans`` left out."""
        made = cls.from_dict(Prior.to_dict(likelihood))  # the prior alone, also when it is padded already
        made.spans = {str(m): (pd.Timestamp(a).isoformat(), pd.Timestamp(b).isoformat()) for m, (a, b) in spans.items()}
        return made

    def to_dict(self) -> dict[str, Any]:
        """The library's model-config encoding: the wrapped prior and the spans (a plain ``Prior`` entry would lose
        the spans, since PyMC-Marketing writes any ``Prior`` subclass as a ``Prior``)."""
        return {"__type__": TYPE_KEY, "prior": super().to_dict(), "spans": {m: list(s) for m, s in self.spans.items()}}

    def padded_cells(self, dates: Any, markets: Any, dims: tuple[str, ...]) -> np.ndarray:
        """Boolean array over ``dims`` (date and market, in the variable's order): True where a cell is padding."""
        index = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
        unknown = sorted(set(map(str, markets)) - set(self.spans))
        if unknown:
            raise ValueError(f"the padded likelihood has no weeks of market(s) {unknown} (it has {sorted(self.spans)})")
        columns = [
            (index < pd.Timestamp(self.spans[str(m)][0])) | (index > pd.Timestamp(self.spans[str(m)][1]))
            for m in markets
        ]
        padded = np.stack(columns, axis=1)  # (date, market)
        return padded if dims.index(DATE_COLUMN) < dims.index(MARKET_COLUMN) else padded.T

    def create_likelihood_variable(self, name: str, mu: Any, observed: Any, xdist: bool = False) -> Any:
        """The library's likelihood variable, and the potential that removes its padded cells' log-density."""
        variable = super().create_likelihood_variable(name, mu, observed, xdist=xdist)
        model = pm.modelcontext(None)
        dims = tuple(variable.type.dims) if xdist else (DATE_COLUMN, MARKET_COLUMN)
        padded = self.padded_cells(model.coords[DATE_COLUMN], model.coords[MARKET_COLUMN], dims)
        if padded.any():
            (log_density,) = model.logp(vars=[model[name]], sum=False)
            cells = log_density.values if hasattr(log_density, "values") else log_density
            pm.Potential(f"{name}{PADDED_SUFFIX}", -pt.sum(pt.switch(padded, cells, 0.0)))
        return variable


TYPE_KEY = f"{PaddedLikelihood.__module__}.{PaddedLikelihood.__qualname__}"


def _serialize(likelihood: PaddedLikelihood) -> dict[str, Any]:
    return likelihood.to_dict()


def _deserialize(data: dict[str, Any], context: Any = None) -> PaddedLikelihood:
    return PaddedLikelihood.around(deserialize(data["prior"]), {m: tuple(s) for m, s in data["spans"].items()})


serialization.register(TYPE_KEY, PaddedLikelihood, serializer=_serialize, deserializer=_deserialize)


def use_panel(mmm: MMM, panel: Panel, fixed: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """Make the (unbuilt) pooled ``mmm`` take ``panel``: its terms' centres and scales over each market's own weeks
    (a scale in ``fixed``, per market and control, instead), and, when a market is padded, the likelihood without the
    padded cells."""
    terms = role_terms(mmm)
    if terms is not None:
        for market in panel.spans:
            terms.market_centers.setdefault(market, {}).update(panel.centers.get(market, {}))
            scales = terms.market_scales.setdefault(market, {})
            scales.update(panel.scales.get(market, {}))
            scales.update((fixed or {}).get(market, {}))
    if panel.padded:
        mmm.model_config["likelihood"] = PaddedLikelihood.around(mmm.model_config["likelihood"], panel.spans)


@dataclass(frozen=True)
class PanelScales:
    """Each market's target and channel scales: its fixed ones (``model.scaling``, the market's own entry over the
    scenario's), else in proportion to its population when the markets' populations are given (Meridian's population
    scaling: population x the median over the markets of their maxima per head, so a market that spends more per head
    than the others is further up the same response curve, not on a curve of its own), else the maximum over its own
    weeks (which the padding never changes).

    The library scales a whole variable one way, so as soon as one market's target (or channels) is fixed, every
    market's is given to it as a fixed value, each market without one at its own maximum.
    """

    target: dict[str, float]
    channels: dict[str, dict[str, float]]
    fixed_target: bool = False
    fixed_channels: bool = False

    @classmethod
    def of(cls, frames: Mapping[str, pd.DataFrame], channels: list[str],
           fixed: Mapping[str, ModelScales | None] | None = None,
           population: Mapping[str, float] | None = None) -> PanelScales:
        """The scales of ``frames`` (each market's own weeks): ``fixed`` (per market, None = not fixed) over the ones
        in proportion to ``population`` (per market; None or empty = each market's maxima)."""
        fixed = fixed or {}
        columns = [TARGET_COLUMN, *channels]
        maxima = pd.DataFrame({market: frame[columns].max() for market, frame in frames.items()}, dtype=float).T
        if population:
            missing = sorted(set(frames) - set(population))
            if missing:
                raise InputError(f"markets.population has no population for market(s) {missing}; give every "
                                 "market's, or none")
            sizes = pd.Series({market: float(population[market]) for market in frames})
            per_head = maxima.div(sizes, axis=0).median()
            maxima = pd.DataFrame(np.outer(sizes, per_head), index=sizes.index, columns=columns)
        target, scales = {}, {}
        for market in frames:
            own = fixed.get(market)
            target[market] = float(own.target if own and own.target is not None else maxima.loc[market, TARGET_COLUMN])
            given = own.channels if own and own.channels is not None else {}
            scales[market] = {c: float(given[c]) if c in given else float(maxima.loc[market, c]) for c in channels}
        fixing = [s for s in fixed.values() if s is not None]
        return cls(target, scales, bool(population) or any(s.target is not None for s in fixing),
                   bool(population) or any(s.channels is not None for s in fixing))

    def scaling(self) -> Scaling:
        """PyMC-Marketing's scaling for the panel: per market (its maxima over the dates only, unlike the library's
        panel default of one maximum over every market), fixed where fixed."""
        data_max = DataDerivedScaling(method="max", dims=())
        channel: DataDerivedScaling | FixedScaling = data_max
        if self.fixed_channels:
            markets, channels = list(self.channels), list(next(iter(self.channels.values())))
            grid = [[self.channels[m][c] for c in channels] for m in markets]
            channel = FixedScaling(dims=(), value=xr.DataArray(
                grid, dims=(MARKET_COLUMN, "channel"), coords={MARKET_COLUMN: markets, "channel": channels}))
        target = FixedScaling(dims=(), value=dict(self.target)) if self.fixed_target else data_max
        return Scaling(target=target, channel=channel)

    def check(self, mmm: MMM) -> None:
        """Raise when a built pooled model's channel or target scale of a market is not this one."""
        scalers = mmm.scalers
        for market, channels in self.channels.items():
            names = list(channels)
            own = np.append(list(channels.values()), self.target[market])
            built = np.append(scalers["_channel"].sel({MARKET_COLUMN: market}).sel(channel=names).to_numpy(),
                              float(scalers["_target"].sel({MARKET_COLUMN: market})))
            if not np.allclose(own, built, rtol=1e-12):
                raise RuntimeError(f"market {market!r}: the pooled model's scales {built} are not its own {own}")


def own_weeks(mmm: MMM) -> XTensorVariable | None:
    """A built pooled model's (date, market) mask, 1 on each market's own weeks and 0 on its padding; None when no
    market is padded."""
    likelihood = mmm.model_config.get("likelihood")
    if not isinstance(likelihood, PaddedLikelihood):
        return None
    dims = (DATE_COLUMN, MARKET_COLUMN)
    padded = likelihood.padded_cells(mmm.model.coords[DATE_COLUMN], mmm.model.coords[MARKET_COLUMN], dims)
    return as_xtensor((~padded).astype(float), dims=dims)


def market_span(mmm: MMM, market: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last own week of ``market`` in a pooled model whose markets cover different weeks (fitted or
    loaded); None when every market covers every week of the model."""
    likelihood = mmm.model_config.get("likelihood")
    if not isinstance(likelihood, PaddedLikelihood):
        return None
    first, last = likelihood.spans[market]
    return pd.Timestamp(first), pd.Timestamp(last)


@contextlib.contextmanager
def padded_predictive(mmm: MMM) -> Iterator[None]:
    """Forward sampling of a padded pooled model without PyMC's warning about its potential (``POTENTIAL_WARNING``:
    the potential does not touch the predictive of ``y``); any other warning, and any other model's, shows."""
    with warnings.catch_warnings():
        if isinstance(mmm.model_config.get("likelihood"), PaddedLikelihood):
            warnings.filterwarnings("ignore", message=POTENTIAL_WARNING, category=UserWarning)
        yield
