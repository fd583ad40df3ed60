"""The pooled model's panel: markets over different weeks stacked, padded and left out of the likelihood (no
sampling here; the pooled fits over staggered markets are in test_pooling.py)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymc_marketing.serialization import serialization

from mmm_assets.core.config import DATE_COLUMN
from mmm_assets.core.errors import InputError
from mmm_assets.core.inference.compiling import QUICK_MODE
from mmm_assets.core.modelling import panel, pooling
from mmm_assets.core.modelling import priors as priors_core
from mmm_assets.core.variables import CONTRIBUTIONS
from mmm_assets_tests.core.modelling.test_pooling import CONTROLS, market_features, scenario, small_frames

#: In the staggered controls scenario south opens 12 weeks after north (2019-01-07) and north's history ends 8 weeks
#: before south's (2020-12-28).
SOUTH_OPENS, NORTH_ENDS = "2019-04-01", "2020-11-02"


def test_stack_markets_makes_one_long_frame() -> None:
    stacked = panel.stack_markets(small_frames(), [DATE_COLUMN, "y", "tv"])
    assert list(stacked.columns) == ["market", DATE_COLUMN, "y", "tv"]
    assert stacked["market"].value_counts().to_dict() == {"north": 10, "south": 10}


def test_a_later_start_and_an_earlier_end_are_padded_with_values_that_change_nothing() -> None:
    frames = small_frames()
    own = {"north": frames["north"].iloc[:8].copy(), "south": frames["south"].iloc[3:].reset_index(drop=True)}
    for market, frame in own.items():
        frame["price"] = np.linspace(5.0, 9.0, len(frame)) * (2 if market == "south" else 1)
    terms = priors_core.RoleTerms(names=["price"], roles=["control"], signs=["negative"], adstock=[True],
                                  center=[True], prior_sigma=[1.0], controls=["price"], l_max=4, alpha_prior=(1, 3))
    stacked = panel.stack_panel(own, [DATE_COLUMN, "y", "tv", "price"], ["tv"], terms)
    assert stacked.padded and len(stacked.weeks) == 10
    assert {m: (str(a.date()), str(b.date())) for m, (a, b) in stacked.spans.items()} == {
        "north": ("2024-01-01", "2024-02-19"), "south": ("2024-01-22", "2024-03-04")}
    for market, frame in own.items():
        rows = stacked.frame[stacked.frame["market"] == market].set_index(DATE_COLUMN)
        assert rows.index.equals(stacked.weeks)  # every week of the panel, in order
        pads = rows.loc[~rows.index.isin(frame[DATE_COLUMN])]
        assert len(pads) == 10 - len(frame)
        assert (pads["tv"] == 0).all()  # no spend: nothing carried over into the market's first week
        center = frame["price"].mean()  # at the term's centre: a scaled input of exactly 0
        assert stacked.centers[market]["price"] == pytest.approx(center)
        assert stacked.scales[market]["price"] == pytest.approx((frame["price"] - center).abs().max())
        assert (pads["price"] == stacked.centers[market]["price"]).all()
        assert (pads["y"] == frame["y"].mean()).all()  # a placeholder within the market's own range
        pd.testing.assert_frame_equal(rows.loc[frame[DATE_COLUMN]].reset_index()[list(frame.columns)],
                                      frame.reset_index(drop=True), check_names=False)


def _one_market(frames: dict[str, pd.DataFrame]) -> None:
    frames.pop("south")


def _no_column(frames: dict[str, pd.DataFrame]) -> None:
    frames["south"] = frames["south"].drop(columns="tv")


def _never_spent(frames: dict[str, pd.DataFrame]) -> None:
    frames["north"]["tv"] = 0.0


def _empty_cell(frames: dict[str, pd.DataFrame]) -> None:
    frames["north"].loc[3, "y"] = np.nan


def _gap_inside(frames: dict[str, pd.DataFrame]) -> None:
    frames["south"] = frames["south"].drop(index=4)


def _other_weekday(frames: dict[str, pd.DataFrame]) -> None:
    frames["south"][DATE_COLUMN] += pd.Timedelta(days=2)


def _gap_between(frames: dict[str, pd.DataFrame]) -> None:
    frames["south"][DATE_COLUMN] += pd.Timedelta(weeks=12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_one_market, r"at least two markets"),
        (_no_column, r"market 'south': column\(s\) \['tv'\] missing"),
        (_never_spent, r"market 'north': column\(s\) \['tv'\] are zero in every week"),
        (_empty_cell, r"market 'north': empty cells in column\(s\) \['y'\]"),
        (_gap_inside, r"market 'south' covers 2024-01-01\.\.2024-03-04 \(9 weeks\) but not as consecutive weeks "
                      r"\(a gap or repeat before 2024-02-05\)"),
        (_other_weekday, r"market\(s\) 'south' \(weeks from 2024-01-03\) are not on the weekly grid of market "
                         r"'north' \(weeks from 2024-01-01\)"),
        (_gap_between, r"no market covers the weeks 2024-03-11\.\.2024-03-18 before market 'south' starts"),
    ],
)
def test_stack_panel_refuses_what_the_panel_model_cannot_fit(change, message: str) -> None:
    frames = small_frames()
    change(frames)
    with pytest.raises(InputError, match=message):
        panel.stack_markets(frames, [DATE_COLUMN, "y", "tv"])


@pytest.fixture(scope="module")
def staggered(tmp_path_factory: pytest.TempPathFactory):
    """The controls scenario (price, trend, event per market) with south opening later and north ending earlier,
    built with an ROI prior on facebook."""
    folder = tmp_path_factory.mktemp("staggered")
    markets = {"data": {"south": {"synthetic": {"start_date": SOUTH_OPENS}},
                        "north": {"synthetic": {"end_date": NORTH_ENDS}}}}
    cfg = scenario(folder, CONTROLS, markets=markets, model={"roi_priors": {"facebook": {"mean": 1.5, "sd": 0.1}}})
    frames = {m: market_features(cfg, m)[0] for m in cfg.market_names}
    mmm, stacked = pooling.built_pooled_mmm(cfg, frames)
    assert priors_core.add_roi_priors(mmm, cfg, stacked.frame, list(frames), panel.own_weeks(mmm)) == ["facebook"]
    return cfg, frames, mmm, stacked


def _padded(mmm) -> np.ndarray:
    return mmm.model_config["likelihood"].padded_cells(mmm.model.coords["date"], mmm.model.coords["market"],
                                                       ("date", "market"))


def test_padded_cells_contribute_nothing_to_the_log_probability(staggered) -> None:
    _, frames, mmm, stacked = staggered
    assert stacked.padded and (len(frames["north"]), len(frames["south"])) == (96, 92)
    assert mmm.model["y"].type.dims == ("date", "market")  # the library's y over the whole grid
    assert [p.name for p in mmm.model.potentials] == [f"y{panel.PADDED_SUFFIX}"]
    padded = _padded(mmm)
    assert padded.sum() == 20 and padded[:12, 1].all() and padded[-8:, 0].all()  # south's first, north's last
    target = mmm.model["target_data"]  # (date, market), the raw target; its scale is fixed in the model
    original = target.get_value().copy()
    point = mmm.model.initial_point(0)
    logp = mmm.model.compile_logp(mode=QUICK_MODE)
    others = [v for v in mmm.model.basic_RVs if v.name != "y"]
    parts = mmm.model.compile_fn([mmm.model.logp(vars=others), *mmm.model.logp(vars=[mmm.model["y"]], sum=False)],
                                 mode=QUICK_MODE, on_unused_input="ignore")

    def at(values: np.ndarray) -> float:
        target.set_value(values)
        return float(logp(point))

    try:
        base = at(original)
        # any placeholder within south's own range gives the same log-probability...
        low, high = frames["south"]["y"].min(), frames["south"]["y"].max()
        for value in (low, high, 0.5 * (low + high)):
            assert at(np.where(padded, value, original)) == pytest.approx(base, abs=1e-8)
        # ...while a real week does change it
        changed = original.copy()
        changed[12, 1] = low
        assert abs(at(changed) - base) > 1e-4  # (small: the initial point's noise sd is wide)
        # and it is the rest of the model plus the likelihood of the real cells alone
        target.set_value(original)
        rest, cells = parts(point)
        assert base == pytest.approx(float(rest) + float(np.asarray(cells)[~padded].sum()), abs=1e-8)
    finally:
        target.set_value(original)


def test_the_roi_prior_is_stated_on_each_markets_own_weeks(staggered) -> None:
    """North's spend carries over into the padded weeks after its last one; its ROAS counts its own weeks only."""
    _, frames, mmm, _ = staggered
    model, point = mmm.model, mmm.model.initial_point(0)
    contribution = model[CONTRIBUTIONS]
    terms, contributions = model.compile_fn(
        [*model.logp(vars=[model[priors_core.ROI_PRIOR]], sum=False), *model.replace_rvs_by_values([contribution])],
        inputs=model.value_vars, mode=QUICK_MODE, on_unused_input="ignore")(point)
    dims = contribution.type.dims
    contributions = np.moveaxis(contributions, [dims.index("date"), dims.index("market")], [0, 1])
    facebook = list(mmm.channel_columns).index("facebook")
    padded = _padded(mmm)
    assert np.abs(contributions[padded[:, 0], 0, facebook]).max() > 0  # north's carry-over after its end...
    for position, (market, frame) in enumerate(frames.items()):
        own = contributions[~padded[:, position], position, facebook]
        roas = own.sum() / frame["facebook"].sum()  # ...is not in its ROAS
        expected = -0.5 * ((1.5 - roas) / 0.1) ** 2 - np.log(0.1) - 0.5 * np.log(2 * np.pi)
        assert float(np.asarray(terms)[position]) == pytest.approx(expected, rel=1e-9), market


def test_scales_and_term_centres_are_each_markets_own_weeks(staggered) -> None:
    _, frames, mmm, _ = staggered
    terms = priors_core.role_terms(mmm)
    for market, frame in frames.items():
        channels = list(mmm.channel_columns)
        np.testing.assert_allclose(mmm.scalers["_channel"].sel(market=market, channel=channels), frame[channels].max())
        assert float(mmm.scalers["_target"].sel(market=market)) == frame["y"].max()
        price = frame["price"].to_numpy()
        assert terms.market_centers[market]["price"] == pytest.approx(price.mean(), rel=1e-12)
        assert terms.market_scales[market]["price"] == pytest.approx(np.abs(price - price.mean()).max(), rel=1e-12)
    padded = panel.PaddedLikelihood.around(mmm.model_config["likelihood"], {"north": ("2019-01-07", "2020-12-28")})
    with pytest.raises(RuntimeError, match="market 'south': the pooled model's scales"):
        panel.PanelScales.of({**frames, "south": frames["south"].assign(y=frames["south"]["y"] * 2)},
                             list(mmm.channel_columns)).check(mmm)
    with pytest.raises(ValueError, match=r"no weeks of market\(s\) \['south'\]"):
        padded.padded_cells(mmm.model.coords["date"], ["north", "south"], ("date", "market"))


def test_the_padded_likelihood_is_saved_with_the_model_config(staggered) -> None:
    _, frames, mmm, _ = staggered
    likelihood = mmm.model_config["likelihood"]
    written = json.dumps(serialization.serialize_model_config({"likelihood": likelihood}))
    read = serialization.deserialize_model_config(json.loads(written))["likelihood"]
    assert isinstance(read, panel.PaddedLikelihood) and read.spans == likelihood.spans
    assert read.to_dict() == likelihood.to_dict() and read.distribution == "Normal"
    assert panel.market_span(mmm, "south") == (pd.Timestamp(SOUTH_OPENS), frames["south"][DATE_COLUMN].iloc[-1])


def test_a_balanced_panel_keeps_the_library_likelihood(tmp_path: Path) -> None:
    cfg = scenario(tmp_path, CONTROLS)
    frames = {m: market_features(cfg, m)[0] for m in cfg.market_names}
    mmm, stacked = pooling.built_pooled_mmm(cfg, frames)
    assert not stacked.padded and not mmm.model.potentials
    assert type(mmm.model_config["likelihood"]).__name__ == "Prior"
    assert panel.market_span(mmm, "south") is None
