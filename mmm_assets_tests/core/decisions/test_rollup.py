"""The per-market and all-markets roll-up on the three small market fits, against the markets' own tables and the
generators' truth."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.decisions.roas import channel_roas
from mmm_assets.core.decisions.rollup import ALL_CHANNELS_ROW, ALL_MARKETS_ROW, MarketDraws, roll_up

pytestmark = pytest.mark.slow

#: As in test_roas: the truth lies inside the 94 % HDI or within 10 % of its nearest bound.
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def windows(three_market_fits) -> dict[str, MarketDraws]:
    fits = three_market_fits
    return {m: MarketDraws.of(fits.models[m], fits.features[m], f"{m} v1") for m in fits.cfg.market_names}


@pytest.fixture(scope="module")
def table(windows) -> pd.DataFrame:
    return roll_up(windows).set_index(["market_name", "channel"])


def test_each_market_is_its_own_roas_table(three_market_fits, windows, table):
    """A market's channel rows are exactly what channel_roas says for that market alone (computing the draws
    itself, not taking the market's)."""
    fits = three_market_fits
    for market in windows:
        own = channel_roas(fits.models[market], fits.features[market]).set_index("channel")
        rows = table.loc[market].drop(index=ALL_CHANNELS_ROW)
        for column in ("spend", "contribution_mean", "contribution_hdi_low", "roas_mean", "roas_hdi_high"):
            assert np.allclose(rows[column], own.loc[rows.index, column], rtol=1e-9), (market, column)
        assert rows["share_of_media_mean"].sum() == pytest.approx(1.0)


def test_all_markets_add_up_draw_by_draw(windows, table):
    """The all-markets row of a channel is the sum over markets (spend exactly, the mean up to thinning), and its HDI
    is that of a sum of independent posteriors: narrower than the markets' widths added up. The three fits share
    the sampler's seed, so pairing their draws as sampled made it about as wide (0.93 of the sum for adwords)."""
    markets = list(windows)
    channels = [c for c in table.loc[ALL_MARKETS_ROW].index if c != ALL_CHANNELS_ROW]
    for channel in [*channels, ALL_CHANNELS_ROW]:
        national = table.loc[(ALL_MARKETS_ROW, channel)]
        parts = table.loc[[(m, channel) for m in markets]]
        assert national["spend"] == pytest.approx(parts["spend"].sum(), rel=1e-12)
        assert national["contribution_mean"] == pytest.approx(parts["contribution_mean"].sum(), rel=0.02)
        assert national["roas_mean"] == pytest.approx(national["contribution_mean"] / national["spend"], rel=0.02)
        width = national["contribution_hdi_high"] - national["contribution_hdi_low"]
        widths = (parts["contribution_hdi_high"] - parts["contribution_hdi_low"]).sum()
        assert 0 < width < 0.9 * widths, (channel, width, widths)
    summed = table.loc[ALL_MARKETS_ROW].drop(index=ALL_CHANNELS_ROW)
    assert summed["spend"].sum() == pytest.approx(table.loc[(ALL_MARKETS_ROW, ALL_CHANNELS_ROW), "spend"])
    first, last = (table.loc[(ALL_MARKETS_ROW, ALL_CHANNELS_ROW), c] for c in ("first_week", "last_week"))
    assert first == min(w.dates.min() for w in windows.values())
    assert last == max(w.dates.max() for w in windows.values())


def test_all_markets_contribution_covers_the_truth(three_market_fits, table):
    """Each channel's true contribution summed over the markets lies in (or within 10 % of) its all-markets HDI."""
    fits = three_market_fits
    truth = {c: sum(float(fits.truths[m].contributions[c].sum()) for m in fits.cfg.market_names)
             for c in fits.truths[fits.cfg.market_names[0]].parameters.index}
    for channel, true in truth.items():
        row = table.loc[(ALL_MARKETS_ROW, channel)]
        low, high = row["contribution_hdi_low"], row["contribution_hdi_high"]
        assert low * (1 - TOLERANCE) <= true <= high * (1 + TOLERANCE), (channel, true, low, high)


def test_one_market_is_refused(windows):
    with pytest.raises(ValueError, match="at least two markets"):
        roll_up(dict(list(windows.items())[:1]))
