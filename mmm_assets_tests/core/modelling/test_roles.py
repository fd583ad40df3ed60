"""Variable roles: configuration, calendar features, simulation of every role, its recovery, and fixed scaling."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import ColumnMapping, ConfigError, load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.data.calendar import event_indicators, with_calendar
from mmm_assets.core.modelling import build as build_core
from mmm_assets.core.modelling import fitting as fitting_core
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.modelling import posterior as posterior_core
from mmm_assets.core.modelling.priors import term_estimates
from mmm_assets.core.modelling.roles import term_specs
from mmm_assets.core.synthetic.generator import generate, landing_export
from mmm_assets.core.variables import PREDICTED
from mmm_assets_tests.conftest import SMALL, merge
from mmm_assets_tests.role_scenarios import ROLES_EXAMPLE, roles_fit, roles_overrides, scenario

BF = {"dates": ["2019-11-29", "2020-11-27"], "sign": "positive"}


# -- configuration ------------------------------------------------------------------------------------------------
def test_roles_example_declares_every_role():
    cfg = load_config(ROLES_EXAMPLE)
    assert cfg.channels == ["adwords", "facebook", "linkedin", "email"]  # the media the model saturates
    assert cfg.paid_channels == ["adwords", "facebook", "linkedin"] and cfg.owned_channels == ["email"]
    assert cfg.competitors == ["rival"]
    assert cfg.controls == ["rival", "price", "event_black_friday", "event_christmas"]
    assert cfg.term_roles == {
        "rival": "competitor", "price": "control", "event_black_friday": "event", "event_christmas": "event",
        "trend": "trend",
    }
    specs = {s.name: s for s in term_specs(cfg)}
    assert (specs["rival"].sign, specs["rival"].adstock, specs["rival"].center) == ("negative", True, False)
    assert (specs["price"].sign, specs["price"].adstock, specs["price"].center) == ("negative", False, True)
    assert specs["event_black_friday"].sign == "positive" and specs["event_christmas"].sign == "free"
    assert specs["trend"].sign == "free" and not specs["trend"].adstock


def test_default_scenario_has_no_roles_and_builds_the_same_model():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.paid_channels == cfg.channels and cfg.owned_channels == [] and cfg.controls == []
    assert term_specs(cfg) == []
    mmm = build_core.build_mmm(cfg)
    assert mmm.mu_effects == [] and mmm.control_columns is None
    assert type(mmm.scaling.channel).__name__ == "DataDerivedScaling"


def test_term_settings_override_role_defaults(small_config):
    cfg = small_config({"data": {"synthetic": {"controls": {"temp": {"level": 15, "sd": 3, "effect": 0.01}}}},
                        "model": {"term_prior_sigma": 2.0,
                                  "terms": {"temp": {"sign": "positive", "adstock": True, "center": False,
                                                     "prior_sigma": 0.5}}}})
    (spec,) = term_specs(cfg)
    assert (spec.role, spec.sign, spec.adstock, spec.center, spec.prior_sigma) == ("control", "positive", True,
                                                                                   False, 0.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": {"terms": {"nope": {"sign": "positive"}}}}, "model.terms names ['nope']"),
        ({"data": {"synthetic": {"competitors": {"rival": {"activity_min": 0, "activity_max": 1, "effect": -1,
                                                          "adstock_alpha": 0.2}}}},
          "model": {"terms": {"rival": {"sign": "free"}}}}, "model.terms.rival.sign"),
        ({"data": {"synthetic": {"competitors": {"rival": {"activity_min": 0, "activity_max": 1, "effect": 1,
                                                          "adstock_alpha": 0.2}}}}}, "effect"),
        ({"model": {"roi_priors": {"tv": {"mean": 2, "sd": 1}}}}, "model.roi_priors names ['tv']"),
        ({"model": {"roi_priors": {"adwords": {"mean": -2, "sd": 1}}}}, "roi_priors.adwords.mean"),
        ({"model": {"scaling": {"channels": {"adwords": 1000}}}}, "model.scaling.channels must give a scale"),
        ({"model": {"scaling": {"target": 0}}}, "model.scaling.target"),
        ({"model": {"scaling": {"markets": {"east": {"target": 1}}}}}, "model.scaling.markets names ['east']"),
        ({"model": {"scaling": {"markets": {"national": {"channels": {"adwords": 1}}}}}},
         "model.scaling.markets.national.channels must give a scale for every channel"),
        ({"model": {"scaling": {"markets": {"national": {"controls": {"tv": 1}}}}}},
         "model.scaling.markets.national.controls names ['tv']"),
        ({"data": {"synthetic": {"events": {"easter": 0.1}}}}, "not events of model.calendar"),
        ({"model": {"lift_tests": {"file": "tests.csv"}}}, "model.lift_tests.folder is needed"),
        ({"model": {"lift_tests": {"file": "../tests.csv", "folder": "x"}}}, "plain file name"),
        ({"data": {"synthetic": {"channels": {"linkedin": {"follows": "tv"}}}}}, "follows 'tv'"),
        ({"data": {"synthetic": {"channels": {c: {"role": "owned"} for c in ("adwords", "facebook", "linkedin")}}}},
         "every synthetic channel is owned"),
        ({"data": {"synthetic": {"controls": {"adwords": {"level": 1, "sd": 1, "effect": 1}}}}},
         "named more than once"),
        ({"model": {"trend": True, "terms": {"trend": {"adstock": True}}},
          "data": {"synthetic": {"controls": {"trend": {"level": 1, "sd": 1, "effect": 1}}}}}, "'trend'"),
        ({"model": {"calendar": {"Black Friday": BF}}}, "calendar event name"),
        ({"model": {"trend": True, "terms": {"trend": {"adstock": True}}}}, "the trend takes no carry-over"),
    ],
)
def test_bad_role_settings_name_the_key(small_config, overrides, message):
    with pytest.raises(ConfigError, match=None) as err:
        small_config(overrides)
    assert message in str(err.value)


def test_column_mapping_roles_refine_channels_and_controls():
    mapping = ColumnMapping(date="d", target="t", channels={"search": "S", "email": "E"},
                            controls={"price": "P", "rival": "R"}, owned=["email"], competitors=["rival"])
    assert mapping.owned == ["email"] and mapping.competitors == ["rival"]
    with pytest.raises(ValueError, match=r"owned lists \['tv'\]"):
        ColumnMapping(date="d", target="t", channels={"search": "S"}, owned=["tv"])
    with pytest.raises(ValueError, match=r"competitors lists \['search'\]"):
        ColumnMapping(date="d", target="t", channels={"search": "S"}, competitors=["search"])


def test_files_scenario_roles(write_config):
    columns = {"date": "Week", "target": "Sales", "channels": {"search": "S", "email": "E"},
               "controls": {"price": "P", "rival": "R"}, "owned": ["email"], "competitors": ["rival"]}
    cfg = load_config(write_config({"data": {"source": "files", "files": {"landing_dir": "landing",
                                                                          "columns": columns}},
                                    "model": {"calendar": {"black_friday": BF}}}))
    assert cfg.channels == ["search", "email"] and cfg.paid_channels == ["search"]
    assert cfg.competitors == ["rival"]
    assert cfg.controls == ["price", "rival", "event_black_friday"]
    assert cfg.term_roles["rival"] == "competitor" and cfg.term_roles["price"] == "control"


# -- calendar -----------------------------------------------------------------------------------------------------
def test_event_indicators_flag_the_week_holding_each_date():
    from mmm_assets.core.config import CalendarEvent

    weeks = pd.date_range("2020-11-02", periods=10, freq="W-MON")  # Mondays
    shuffled = pd.Series(weeks[::-1])
    calendar = {
        "bf": CalendarEvent(dates=["2020-11-27", "2031-01-01"], weeks_before=1, weeks_after=1),
        "sunday": CalendarEvent(dates=["2020-11-08"]),  # the last day of the first week
    }
    flags = event_indicators(shuffled, calendar)
    by_week = pd.DataFrame({"date": shuffled.to_numpy(), **{c: flags[c].to_numpy() for c in flags}}).set_index("date")
    bf = by_week["event_bf"].sort_index()
    assert list(bf.index[bf == 1]) == list(pd.to_datetime(["2020-11-16", "2020-11-23", "2020-11-30"]))
    assert by_week["event_sunday"].sort_index().tolist() == [1.0] + [0.0] * 9


def test_with_calendar_adds_columns_without_touching_the_frame(small_config):
    cfg = small_config({"model": {"calendar": {"black_friday": BF}}})
    frame, _ = generate(cfg.data.synthetic)
    out = with_calendar(frame, cfg)
    assert "event_black_friday" not in frame.columns
    assert out["event_black_friday"].sum() == 2
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    assert list(out.loc[out["event_black_friday"] == 1, "date"]) == list(pd.to_datetime(["2019-11-25", "2020-11-23"]))


def test_fit_names_the_missing_calendar_columns(small_config):
    cfg = small_config({"model": {"calendar": {"black_friday": BF}}})
    frame, _ = generate(cfg.data.synthetic)
    with pytest.raises(ValueError, match=r"lacks \['event_black_friday'\].*with_calendar"):
        fitting_core.fit(cfg, frame)


# -- simulation ---------------------------------------------------------------------------------------------------
def test_every_role_is_simulated_and_adds_up_without_noise(small_config):
    cfg = small_config(roles_overrides())
    quiet = cfg.data.synthetic.model_copy(update={"noise_sigma": 0.0})
    frame, truth = generate(quiet, cfg.model.calendar)
    assert {"rival", "price"} <= set(frame.columns)
    parts = truth.components.drop(columns=["date"])
    assert set(parts.columns) == {"rival", "price", "event_black_friday", "event_christmas", "trend", "seasonality"}
    total = truth.intercept * truth.outcome_scale + truth.contributions[cfg.channels].sum(axis=1) + parts.sum(axis=1)
    assert np.allclose(total, frame["y"])
    assert (parts["rival"] <= 0).all() and (parts["rival"] < 0).any()
    flagged = with_calendar(frame, cfg)["event_black_friday"] == 1
    assert np.allclose(parts.loc[flagged, "event_black_friday"], 0.5 * truth.outcome_scale)
    assert (parts.loc[~flagged, "event_black_friday"] == 0).all()
    assert truth.terms.loc["price", "effect_per_unit"] == -0.3 * truth.outcome_scale
    assert truth.parameters.loc["email", "role"] == "owned"


def test_extra_roles_leave_the_channels_draws_unchanged(small_config):
    plain, _ = generate(small_config().data.synthetic)
    cfg = small_config(roles_overrides())
    rich, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    for channel in ("adwords", "facebook", "linkedin"):
        assert np.array_equal(plain[channel], rich[channel])


def test_events_need_the_calendar(small_config):
    cfg = small_config(roles_overrides())
    with pytest.raises(ValueError, match="pass cfg.model.calendar"):
        generate(cfg.data.synthetic)


def test_a_following_channel_is_nearly_collinear(small_config):
    cfg = small_config({"data": {"synthetic": {"channels": {"facebook": {"follows": "adwords",
                                                                         "follow_noise": 0.05}}}}})
    frame, _ = generate(cfg.data.synthetic)
    assert np.corrcoef(frame["adwords"], frame["facebook"])[0, 1] > 0.99
    assert np.corrcoef(frame["adwords"], frame["linkedin"])[0, 1] < 0.9


def test_landing_export_carries_controls(small_config):
    cfg = small_config(roles_overrides())
    frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    mapping = ColumnMapping(date="Week", target="Sales", channels={c: c.upper() for c in cfg.channels},
                            controls={"rival": "Rival", "price": "Price"}, competitors=["rival"], owned=["email"])
    out = landing_export(frame, mapping)
    assert list(out.columns) == ["Week", "Sales", "ADWORDS", "FACEBOOK", "LINKEDIN", "EMAIL", "Rival", "Price"]
    with pytest.raises(ValueError, match="cannot fill"):
        landing_export(frame, mapping.model_copy(update={"controls": {"nope": "N"}}))


# -- recovery (one small MCMC fit of every role) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    return roles_fit()


@pytest.mark.slow
def test_fit_converges(fitted):
    d = fitted.result.diagnostics
    t = fitted.cfg.validation.thresholds
    assert d.divergences <= t.divergences_max and d.max_rhat <= t.rhat_max
    assert any(m.startswith("fixed scales:") for m in fitted.messages)


@pytest.mark.slow
def test_every_term_has_the_right_sign_and_size(fitted):
    """Sign: the whole 94 % HDI on the true side of zero. Size: within 10 % of the truth, the tolerance
    test_model holds the SMALL scenario's saturation rates to (two years of weekly data, 2 x 300 draws)."""
    estimates = term_estimates(fitted.mmm).set_index("term")
    truth = fitted.truth.terms
    assert set(estimates.index) == set(truth.index)
    for term, row in truth.iterrows():
        got = estimates.loc[term]
        if row["effect_per_unit"] > 0:
            assert got["hdi_low"] > 0, term
        else:
            assert got["hdi_high"] < 0, term
        assert got["effect_per_unit"] == pytest.approx(row["effect_per_unit"], rel=0.10), term
    # the competitor's carry-over, learned: within the gate on adstock rates
    alpha_gate = fitted.cfg.validation.thresholds.alpha_abs_error_max
    assert abs(estimates.loc["rival", "adstock_alpha"] - truth.loc["rival", "adstock_alpha"]) <= alpha_gate


@pytest.mark.slow
def test_seasonality_is_recovered(fitted):
    """The model's yearly cycle against the true one (both centred): most of its variation explained."""
    target_scale = float(fitted.mmm.idata.constant_data["target_scale"])
    season = fitted.mmm.idata.posterior["yearly_seasonality_contribution"].mean(("chain", "draw")).to_numpy()
    season = season * target_scale
    true = fitted.truth.components["seasonality"].to_numpy()
    season, true = season - season.mean(), true - true.mean()
    assert 1 - ((season - true) ** 2).sum() / (true**2).sum() > 0.9


@pytest.mark.slow
def test_owned_media_recovered_like_paid(fitted):
    """Saturation and carry-over of every channel, owned email included, within test_model's tolerances."""
    table = posterior_core.posterior_parameters(fitted.mmm).set_index(["channel", "parameter"])
    for channel, row in fitted.truth.parameters.iterrows():
        assert table.loc[(channel, "saturation_lam"), "estimate"] == pytest.approx(row["saturation_lam"], rel=0.1)
        assert table.loc[(channel, "adstock_alpha"), "estimate"] == pytest.approx(row["adstock_alpha"], abs=0.05)


@pytest.mark.slow
def test_saved_model_keeps_its_terms_and_predicts(fitted, tmp_path):
    path = persistence_core.save_model(fitted.mmm, tmp_path / "roles.nc")
    loaded = persistence_core.load_model(path)
    pd.testing.assert_frame_equal(term_estimates(loaded), term_estimates(fitted.mmm))
    assert build_core.fitted_scales(loaded) == build_core.fitted_scales(fitted.mmm)
    features = posterior_core.fitted_features(loaded)
    assert list(features.columns) == list(fitted.features.columns)
    predicted = loaded.sample_posterior_predictive(
        features.drop(columns=["y"]), var_names=[PREDICTED], extend_idata=False, progressbar=False
    )[PREDICTED].mean("sample")
    assert np.abs(predicted.to_numpy() / features["y"].to_numpy() - 1).max() < 0.05


# -- fixed scaling ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fitted_scales_are_the_configured_ones(fitted):
    scales = build_core.fitted_scales(fitted.mmm)
    configured = fitted.cfg.model.scaling
    assert scales.target == configured.target and scales.channels == configured.channels
    assert set(scales.controls) == set(fitted.cfg.controls)
    assert scales.controls["rival"] == fitted.features["rival"].max()
    assert scales.centers["price"] == pytest.approx(fitted.features["price"].mean())


def _built_scales(cfg, features, scales=None):
    mmm = build_core.build_mmm(cfg, build_core.resolve_scales(cfg, features, scales))
    X, y = build_core.split_xy(features)
    mmm.build_model(X, y)
    return float(mmm.scalers["_target"]), {c: float(mmm.scalers["_channel"].sel(channel=c)) for c in cfg.channels}


def test_fixed_scales_do_not_move_with_new_weeks(small_config):
    data_scaled = scenario("scaling_data", SMALL)
    fixed = small_config({"model": {"scaling": {"target": 500000.0,
                                                "channels": {"adwords": 5e4, "facebook": 9e4, "linkedin": 1.6e5}}}})
    features = data_scaled.features
    short = features.iloc[:60]
    assert _built_scales(data_scaled.cfg, short) != _built_scales(data_scaled.cfg, features)  # maxima move
    assert _built_scales(fixed, short) == _built_scales(fixed, features) == (
        500000.0, {"adwords": 5e4, "facebook": 9e4, "linkedin": 1.6e5})


def test_truth_on_fixed_scales_is_what_such_a_model_estimates(small_config):
    """lam acts on spend / scale: a model dividing by twice the maximum sees twice the lam; alpha is unchanged."""
    frame, truth = generate(small_config().data.synthetic)
    spend_max = truth.parameters.loc["adwords", "spend_max"]
    moved = truth.parameters_on_scales({"adwords": 2 * spend_max})
    assert moved.loc["adwords", "saturation_lam"] == pytest.approx(2 * truth.parameters.loc["adwords", "saturation_lam"])
    assert moved.drop(index="adwords").equals(truth.parameters.drop(index="adwords"))
    assert (moved["adstock_alpha"] == truth.parameters["adstock_alpha"]).all()


def test_explicit_scales_win_and_a_new_channel_takes_its_maximum(small_config):
    cfg = small_config({"model": {"scaling": {"target": 500000.0}}})
    features = scenario("scaling_data", SMALL).features
    champion = build_core.ModelScales(target=400000.0, channels={"adwords": 6e4, "facebook": 9e4})
    resolved = build_core.resolve_scales(cfg, features, champion)
    assert resolved.target == 400000.0
    assert resolved.channels == {"adwords": 6e4, "facebook": 9e4, "linkedin": float(features["linkedin"].max())}
    assert _built_scales(cfg, features, champion) == (400000.0, resolved.channels)
    assert build_core.resolve_scales(small_config(), features) is None  # nothing fixed: the library's maxima


def test_a_markets_own_scales_are_laid_over_the_scenarios(small_config):
    """model.scaling.markets: a market's entry wins for that market (controls name by name), the others take the
    scenario's scales."""
    roles = scenario("roles", roles_overrides())
    channels = {"adwords": 5e4, "facebook": 9e4, "linkedin": 1.6e5, "email": 2e5}
    cfg = small_config(merge(roles_overrides(), {"markets": {"names": ["north", "south"]}, "model": {"scaling": {
        "target": 5e5, "channels": None, "controls": {"price": 2.0},
        "markets": {"south": {"target": 2e5, "channels": channels, "controls": {"rival": 3.0}}}}}}))
    north = build_core.resolve_scales(cfg.for_market("north"), roles.features)
    south = build_core.resolve_scales(cfg.for_market("south"), roles.features)
    assert (north.target, north.channels, north.controls) == (5e5, None, {"price": 2.0})
    assert (south.target, south.channels, south.controls) == (2e5, channels, {"price": 2.0, "rival": 3.0})
    assert _built_scales(cfg.for_market("south"), roles.features) == (2e5, channels)
