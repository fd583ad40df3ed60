"""Lift-test calibration: the experiments file, its conversion, the truth-derived sample, and what it buys."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import ConfigError, load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.errors import InputError
from mmm_assets.core.modelling import build as build_core
from mmm_assets.core.modelling import persistence as persistence_core
from mmm_assets.core.modelling.calibration import (
    COLUMNS,
    LIFT_TESTS,
    Experiment,
    add_lift_tests,
    lift_test_report,
    lift_tests_path,
    load_lift_tests,
    read_lift_tests,
    sample_lift_tests,
    to_library_rows,
    validate_lift_tests,
    write_sample_lift_tests,
)
from mmm_assets.core.modelling.priors import posterior_roas
from mmm_assets_tests.conftest import SMALL
from mmm_assets_tests.role_scenarios import EXPERIMENTS, TESTED, collinear_fit, scenario

CHANNELS = ["adwords", "facebook", "linkedin"]
GOOD = pd.DataFrame(
    {
        "channel": ["facebook", "adwords"],
        "start_date": ["2019-06-03", "2020-03-02"],
        "end_date": ["2019-07-28", "2020-03-29"],
        "delta_spend": ["120000", "-40000.5"],
        "lift": ["130000", "-90000"],
        "lift_sd": ["13000", "9000"],
    }
)


def test_a_good_file_is_read_with_types(tmp_path):
    path = tmp_path / "lift.csv"
    GOOD.assign(note="ignored").to_csv(path, index=False)
    tests = read_lift_tests(path, CHANNELS)
    assert list(tests["line"]) == [2, 3]
    assert tests["start_date"].iloc[1] == pd.Timestamp("2020-03-02")
    assert tests["delta_spend"].iloc[1] == -40000.5 and tests["lift_sd"].dtype == float


def test_every_problem_is_named_with_file_line_and_column(tmp_path):
    bad = GOOD.copy()
    bad.loc[0, "channel"] = "tv"
    bad.loc[1, "start_date"] = "03/02/2020"
    bad.loc[0, "lift"] = "1,300"
    bad.loc[1, "lift_sd"] = "0"
    bad = pd.concat([bad, GOOD.iloc[[0]].assign(end_date="2019-05-01", delta_spend="0")], ignore_index=True)
    path = tmp_path / "lift.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        read_lift_tests(path, CHANNELS)
    message = str(err.value)
    assert message.startswith(f"{path}: 6 problem(s) found")
    for expected in (
        "column 'channel', line(s) 2 (tv): not a channel of the scenario",
        "column 'start_date', line(s) 3 (03/02/2020): not a date",
        "column 'lift', line(s) 2 (1,300): not a number",
        "column 'lift_sd', line(s) 3 (0): must be > 0",
        "column 'end_date', line(s) 4 (2019-05-01): before start_date",
        "column 'delta_spend', line(s) 4 (0): zero",
    ):
        assert expected in message


def test_missing_columns_empty_and_absent_files(tmp_path):
    with pytest.raises(InputError, match=r"x.csv: column\(s\) 'lift_sd' missing"):
        validate_lift_tests(GOOD.drop(columns=["lift_sd"]), CHANNELS, "x.csv")
    with pytest.raises(InputError, match="no experiments"):
        validate_lift_tests(GOOD.iloc[:0], CHANNELS, "x.csv")
    with pytest.raises(InputError, match="lift-test file not found"):
        read_lift_tests(tmp_path / "nope.csv", CHANNELS)


def test_with_several_markets_each_experiment_names_its_market_and_a_market_gets_its_own(write_config, tmp_path):
    markets = ["north", "south"]
    with pytest.raises(InputError, match=r"x.csv: column 'market' missing; the scenario has several markets \(north, "
                                         r"south\), so each experiment must name the market it ran in"):
        validate_lift_tests(GOOD, CHANNELS, "x.csv", markets)
    with pytest.raises(InputError, match=r"column 'market', line\(s\) 3 \(east\): not a market of the scenario "
                                         r"\(markets: \['north', 'south'\]\)"):
        validate_lift_tests(GOOD.assign(market=["north", "east"]), CHANNELS, "x.csv", markets)
    assert validate_lift_tests(GOOD, CHANNELS, "x.csv", ["national"])["channel"].tolist() == ["facebook", "adwords"]
    GOOD.assign(market=["south", "north"]).to_csv(tmp_path / "experiments.csv", index=False)
    cfg = load_config(write_config({
        "markets": {"names": markets, "data": {"north": {}, "south": {}}},
        "model": {"lift_tests": {"file": "experiments.csv", "folder": str(tmp_path)}},
    }))
    assert load_lift_tests(cfg)["market"].tolist() == ["south", "north"]  # the scenario: every market's
    assert load_lift_tests(cfg.for_market("north"))["channel"].tolist() == ["adwords"]  # a market: its own
    assert load_lift_tests(cfg.for_market("south"), every_market=True)["market"].tolist() == ["south", "north"]


def test_the_file_is_found_through_the_config(write_config, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    GOOD.to_csv(landing / "experiments.csv", index=False)
    synthetic = load_config(write_config({"model": {"lift_tests": {"file": "experiments.csv", "folder": "landing"}}}))
    assert lift_tests_path(synthetic) == landing / "experiments.csv"  # relative to the project folder
    assert len(load_lift_tests(synthetic)) == 2
    columns = {"date": "Week", "target": "Sales", "channels": {c: c for c in CHANNELS}}
    files = load_config(write_config({"data": {"source": "files", "files": {"landing_dir": str(landing),
                                                                            "file": "weekly.csv", "columns": columns}},
                                      "model": {"lift_tests": {"file": "experiments.csv"}}}))
    assert lift_tests_path(files) == landing / "experiments.csv"  # the landing folder by default
    assert load_lift_tests(load_config(write_config())) is None
    newest = {"data": {"source": "files", "files": {"landing_dir": str(landing), "file": None, "columns": columns}},
              "model": {"lift_tests": {"file": "experiments.csv"}}}
    with pytest.raises(ConfigError, match="newest CSV"):
        load_config(write_config(newest))


def test_the_lift_example_writes_and_reads_its_experiments(tmp_path):
    cfg = load_config(PROJECT_DIR / "config" / "lift_example.yaml")
    assert lift_tests_path(cfg) == PROJECT_DIR / "data" / "experiments" / "lift_tests.csv"
    spec = cfg.model.lift_tests.model_copy(update={"folder": tmp_path})
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lift_tests": spec})})
    path = write_sample_lift_tests(cfg, EXPERIMENTS, relative_sd=0.1, seed=7)
    tests = load_lift_tests(cfg)
    assert path == tmp_path / "lift_tests.csv" and list(tests["channel"]) == [TESTED, TESTED]
    assert tests["lift"].iloc[0] > 0 > tests["lift"].iloc[1]


def test_rows_become_weekly_library_measurements():
    features = scenario("calibration_rows", SMALL).features
    tests = validate_lift_tests(
        pd.concat([GOOD, GOOD.iloc[[0]].assign(start_date="2030-01-01", end_date="2030-02-01")], ignore_index=True),
        CHANNELS, "x.csv",
    )
    rows, notes = to_library_rows(tests, features)
    assert len(rows) == 2 and len(notes) == 1 and "line 4" in notes[0] and "outside the fitted weeks" in notes[0]
    first = rows.iloc[0]
    weeks = features["date"].between("2019-06-03", "2019-07-28")
    assert first["weeks"] == weeks.sum() == 8
    assert first["x"] == pytest.approx(features.loc[weeks, "facebook"].mean())
    assert (first["delta_x"], first["delta_y"], first["sigma"]) == pytest.approx((15000, 16250, 1625))
    cut = validate_lift_tests(GOOD.iloc[[1]].assign(delta_spend="-1e9"), CHANNELS, "x.csv")
    rows, notes = to_library_rows(cut, features)
    assert rows.empty and "below zero spend" in notes[0]


@pytest.mark.parametrize(("method", "variable"), [("exact", "lift_measurements_model_lift_original_scale"),
                                                  ("library", "lift_measurements_model_estimated_lift")])
def test_both_methods_add_the_experiments_to_a_built_model(method, variable):
    plain = scenario("calibration_rows", SMALL)
    mmm = build_core.build_mmm(plain.cfg)
    X, y = build_core.split_xy(plain.features)
    mmm.build_model(X, y)
    tests = validate_lift_tests(GOOD, CHANNELS, "x.csv")
    assert add_lift_tests(mmm, tests, plain.features, method) == (2, [])
    assert variable in mmm.model.named_vars and LIFT_TESTS in {rv.name for rv in mmm.model.observed_RVs}
    with pytest.raises(ValueError, match="unknown lift-test method"):
        add_lift_tests(mmm, tests, plain.features, "approximate")


def test_the_truth_derived_sample_is_the_true_counterfactual():
    plain = scenario("calibration_sample", SMALL)
    up, down = (Experiment("adwords", dt.date(2019, 6, 5), 4, change) for change in (0.2, -0.2))
    exact = sample_lift_tests(plain.truth, plain.frame, [up, down], relative_sd=0.1)
    assert list(exact.columns) == COLUMNS
    assert list(exact["start_date"]) == ["2019-06-03"] * 2 and list(exact["end_date"]) == ["2019-06-30"] * 2
    spend = plain.frame.set_index("date").loc["2019-06-03":"2019-06-24", "adwords"].sum()
    assert exact["delta_spend"].tolist() == pytest.approx([0.2 * spend, -0.2 * spend])
    # concave response: a cut loses more than the same raise gains, and both are of the right sign
    assert 0 < exact["lift"].iloc[0] < -exact["lift"].iloc[1]
    assert exact["lift_sd"].tolist() == pytest.approx((0.1 * exact["lift"].abs()).tolist())
    noisy = sample_lift_tests(plain.truth, plain.frame, [up] * 200, relative_sd=0.1, seed=3)
    z = (noisy["lift"] - exact["lift"].iloc[0]) / exact["lift_sd"].iloc[0]
    assert abs(z.mean()) < 0.25 and 0.8 < z.std() < 1.2
    with pytest.raises(ValueError, match="does not fit"):
        sample_lift_tests(plain.truth, plain.frame, [Experiment("adwords", dt.date(2020, 12, 1), 8, 0.1)], 0.1)


@pytest.mark.slow
def test_lift_tests_fix_what_collinear_data_cannot_tell_apart():
    """Facebook's spend copies adwords' (correlation > 0.99). Without experiments the model misattributes the pair;
    two lift tests on facebook (10 % standard error) bring its ROAS, and so the pair's split, closer to the truth."""
    plain, calibrated = collinear_fit("uncalibrated"), collinear_fit("lift")
    assert np.corrcoef(plain.features["adwords"], plain.features[TESTED])[0, 1] > 0.99
    truth = plain.true_roas()
    error = {}
    for name, fitted in (("plain", plain), ("calibrated", calibrated)):
        roas = posterior_roas(fitted.mmm).mean(("chain", "draw")).to_pandas()
        error[name] = (roas - truth).abs()
    assert error["calibrated"][TESTED] < error["plain"][TESTED]
    assert error["calibrated"]["adwords"] < error["plain"]["adwords"]  # the untested twin is fixed along with it
    n = len(EXPERIMENTS)
    assert f"lift tests: {n} of {n} experiments calibrate the model (exact)" in calibrated.messages
    assert LIFT_TESTS in calibrated.mmm.model.named_vars


@pytest.mark.slow
def test_the_report_shows_the_calibrated_model_reproduces_the_experiments():
    plain, calibrated = collinear_fit("uncalibrated"), collinear_fit("lift")
    tests = load_lift_tests(calibrated.cfg)
    after = lift_test_report(calibrated.mmm, tests)
    before = lift_test_report(plain.mmm, tests)
    assert list(after["line"]) == [2, 3] and after["used"].all()
    assert (after["model_hdi_low"] <= after["model_lift_mean"]).all()
    assert (after["model_lift_mean"] <= after["model_hdi_high"]).all()
    assert (after["z"].abs() < 2).all() and after["measured_in_hdi"].all()
    assert (after["model_lift_sd"] < before["model_lift_sd"]).all()  # the experiments narrowed the model
    # the report's lift (numpy) is the very quantity the model was calibrated on (its graph)
    implied = calibrated.mmm.idata.posterior[f"{LIFT_TESTS}_model_lift_original_scale"].mean(("chain", "draw"))
    assert after["model_lift_mean"].to_numpy() == pytest.approx(implied.to_numpy(), rel=1e-6)


@pytest.mark.slow
def test_a_calibrated_model_survives_save_and_load(tmp_path):
    calibrated = collinear_fit("lift")
    loaded = persistence_core.load_model(persistence_core.save_model(calibrated.mmm, tmp_path / "calibrated.nc"))
    tests = load_lift_tests(calibrated.cfg)
    pd.testing.assert_frame_equal(lift_test_report(loaded, tests), lift_test_report(calibrated.mmm, tests))
