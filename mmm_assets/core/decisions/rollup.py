"""Per-market and all-markets (national) roll-up of every market's contributions and returns, with HDIs.

A multi-market scenario answers "what did each channel bring in each market" market by market (``channel_roas``);
this module adds the view across them that Meridian gives for a geo model: each channel's incremental contribution
and return summed over the markets, and each market's total over its channels, with the uncertainty of the sum.

The sum is taken draw by draw: the markets' window contributions (``roas.incremental_contribution``) are stacked
into one sample dimension and added position by position. For the markets of one pooled model the draws are the
same joint posterior's (same chains and draws), so the sum keeps the markets' correlation exactly. Separately
fitted markets have independent posteriors, but not independent draws: fitted with the same sampler seed, similar
markets' chains take similar random paths, and pairing their i-th draws summed deviations that moved together (on
the three-market test scenario the sum's HDI was as wide as the markets' widths added up). So each separately fitted
market's draws are shuffled (a fixed permutation per market, so the table is reproducible) before they are paired,
and when their numbers of draws differ each is thinned to the smallest, so no market weighs more for having sampled
longer. A market covers its own fitted weeks (markets may cover different windows; the table says which).

Units: every market's KPI and spend are the scenario's (one currency, one KPI); a return is KPI units per unit of
spend, and for a conversions KPI the costs per acquisition come next to the returns (``kpi.with_costs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from pymc_marketing.mmm import MMM

from mmm_assets.core.config import DATE_COLUMN, KpiConfig
from mmm_assets.core.decisions.kpi import KpiTerms, with_costs
from mmm_assets.core.decisions.roas import checked_spend, incremental_contribution
from mmm_assets.core.modelling.pooling import VIEW_SOURCE_ATTR
from mmm_assets.core.modelling.posterior import mean_hdi

#: ``market_name`` of the rows summed over every market; a market name is an identifier, so it cannot clash.
ALL_MARKETS_ROW = "all markets"
#: ``channel`` of the rows summed over every channel.
ALL_CHANNELS_ROW = "all channels"
SAMPLE = "sample"
#: Seed of the permutations that decouple separately fitted markets' draws (see the module's docstring).
PAIRING_SEED = 20261205

COLUMNS = ["market_name", "channel", "weeks", "first_week", "last_week", "spend", "contribution_mean",
           "contribution_hdi_low", "contribution_hdi_high", "roas_mean", "roas_hdi_low", "roas_hdi_high",
           "share_of_media_mean"]


@dataclass(frozen=True)
class MarketDraws:
    """One market's window contributions per posterior draw (chain, draw, channel; KPI units, as
    ``roas.incremental_contribution`` gives them), its spend per channel over the window, the window's weeks, the
    pooled model it is a view of (None for a market's own fit) and the champion it comes from
    (``"<model> v<version>"``). The market's ``channel_roas`` summarises the same draws; the roll-up sums them over
    markets, without loading any model."""

    contribution: xr.DataArray
    spend: pd.Series
    dates: pd.DatetimeIndex
    source: str | None
    champion: str

    @property
    def channels(self) -> list[str]:
        """The market's channels, in its model's order."""
        return [str(c) for c in self.contribution.coords["channel"].values]

    @classmethod
    def of(cls, mmm: MMM, features: pd.DataFrame, champion: str) -> MarketDraws:
        """The draws of ``mmm`` over ``features``, the frame it was fitted on."""
        return cls(incremental_contribution(mmm), checked_spend(mmm, features).sum().astype(float),
                   pd.DatetimeIndex(features[DATE_COLUMN]), view_source(mmm), champion)


def view_source(mmm: MMM) -> str | None:
    """The pooled model ``mmm`` is a market's view of, or None for a market's own fit."""
    return mmm.idata.attrs.get(VIEW_SOURCE_ATTR) if mmm.idata is not None else None


def _draws(market: MarketDraws, channels: list[str]) -> tuple[xr.DataArray, pd.Series]:
    """The market's window contribution per (sample, channel), zero for a channel it does not have, and its spend."""
    own = market.channels
    contribution = market.contribution.stack({SAMPLE: ("chain", "draw")}).transpose(SAMPLE, "channel")
    contribution = contribution.drop_vars([SAMPLE, "chain", "draw"], errors="ignore")
    full = xr.DataArray(np.zeros((contribution.sizes[SAMPLE], len(channels))), dims=[SAMPLE, "channel"],
                        coords={"channel": channels})
    full.loc[{"channel": own}] = contribution.sel(channel=own).to_numpy()
    return full, market.spend.reindex(channels, fill_value=0.0).astype(float)


def draw_pairing(sources: Sequence[str | None], counts: Sequence[int]) -> list[np.ndarray]:
    """Per market, which of its ``counts[i]`` posterior samples (flattened over chain and draw) to add position by
    position to the other markets': all markets get the smallest count, evenly spaced over a fixed shuffle of their
    samples, or over the samples in their order when every market is a view of the same pooled model (``sources``,
    one joint posterior, whose positions already pair). See the module's docstring for why separate fits are
    shuffled."""
    size = min(counts)
    rng = None if len(set(sources)) == 1 and None not in sources else np.random.default_rng(PAIRING_SEED)
    pairing = []
    for count in counts:
        order = np.arange(count) if rng is None else rng.permutation(count)
        pairing.append(order[np.linspace(0, count - 1, size).round().astype(int)])
    return pairing


def _rows(market: str, draws: xr.DataArray, spend: pd.Series, dates: pd.DatetimeIndex, weeks: int) -> pd.DataFrame:
    """One row per channel and one for all channels: contribution and return with HDI over the samples."""
    channels = [str(c) for c in draws.coords["channel"].values]
    with_total = xr.concat([draws, draws.sum("channel").expand_dims(channel=[ALL_CHANNELS_ROW])], dim="channel")
    spend_all = np.append(spend.to_numpy(), spend.sum())
    spend_da = xr.DataArray(spend_all, dims=["channel"], coords={"channel": with_total.coords["channel"]})
    media = draws.sum("channel")
    frame = pd.concat([
        pd.DataFrame({"market_name": market, "channel": [*channels, ALL_CHANNELS_ROW], "weeks": weeks,
                      "first_week": dates.min(), "last_week": dates.max(), "spend": spend_all}),
        mean_hdi(with_total, "contribution_", [SAMPLE]),
        mean_hdi(with_total / spend_da.where(spend_da != 0), "roas_", [SAMPLE]),
    ], axis=1)
    frame["share_of_media_mean"] = (with_total / media.where(media != 0)).mean(SAMPLE).to_numpy()
    return frame


def roll_up(markets: Mapping[str, MarketDraws], kpi: KpiConfig | None = None) -> pd.DataFrame:
    """Every market's channels and their sum over the markets (``market_name`` ``"all markets"``), each with a row
    over all channels: window spend, incremental contribution and return (contribution / spend) with 94 % HDIs, and
    the channel's mean share of the media's contribution. Columns: ``COLUMNS`` (+ CPA columns for conversions).

    Raises ``ValueError`` with fewer than two markets (one market's own table is ``channel_roas``).
    """
    if len(markets) < 2:
        raise ValueError(f"a roll-up needs at least two markets, got {sorted(markets)}")
    channels = list(dict.fromkeys(c for market in markets.values() for c in market.channels))
    per_market = {name: _draws(market, channels) for name, market in markets.items()}
    pairing = draw_pairing([m.source for m in markets.values()], [d.sizes[SAMPLE] for d, _ in per_market.values()])
    frames, total, total_spend, all_dates = [], None, None, []
    for (name, (draws, spend)), chosen in zip(per_market.items(), pairing, strict=True):
        dates = markets[name].dates
        frames.append(_rows(name, draws, spend, dates, len(dates)))
        paired = draws.isel({SAMPLE: chosen})
        total = paired if total is None else total + paired
        total_spend = spend if total_spend is None else total_spend + spend
        all_dates.append(dates)
    union = all_dates[0].append(all_dates[1:]).unique()
    frames.append(_rows(ALL_MARKETS_ROW, total, total_spend, union, len(union)))
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    return with_costs(table, KpiTerms.of(kpi))
