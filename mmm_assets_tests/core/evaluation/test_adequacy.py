"""Identification checks before fitting: data built to trip each one, the project's scenarios judged as documented,
and the parameter count they rest on equal to the built model's."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.evaluation import adequacy
from mmm_assets.core.evaluation.adequacy import (
    CORRELATION,
    ERROR,
    OK,
    VARIATION,
    VIF,
    WARN,
    WEEKS,
    ZEROS,
    adequacy_table,
    identification_summary,
    variance_inflation,
)
from mmm_assets.core.modelling.roles import parameter_counts
from mmm_assets.core.presentation.adequacy_plot import correlation_heatmap
from mmm_assets.core.synthetic.generator import generate

CONFIG = PROJECT_DIR / "config"


def scenario(name: str):
    """A project scenario narrowed to its market and its generated feature table."""
    cfg = load_config(CONFIG / name).for_market(DEFAULT_MARKET)
    frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
    return cfg, weekly_features(cfg, frame)


@pytest.fixture(scope="module")
def reference():
    return scenario("default.yaml")


@pytest.fixture(scope="module")
def realistic():
    return scenario("realistic.yaml")


def failed(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table["passed"]]


def findings(table: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {(r.check, r.subject, r.severity) for r in failed(table).itertuples()}


# -- the project's scenarios -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default.yaml", "roles_example.yaml"])
def test_reference_scenarios_pass_every_check(name):
    cfg, features = scenario(name)
    table = adequacy_table(cfg, features)
    assert failed(table).empty, failed(table)["message"].tolist()
    assert set(table["check"]) == set(adequacy.CHECKS) and list(table.columns) == adequacy.COLUMNS
    assert identification_summary(table) == ""


def test_realistic_warns_exactly_on_its_collinear_pairs(realistic):
    table = adequacy_table(*realistic)
    assert findings(table) == {
        (CORRELATION, "tv & video", WARN), (CORRELATION, "adwords & shopping", WARN),
        (VIF, "shopping", WARN), (VIF, "adwords", WARN),
    }
    message = failed(table).iloc[0]["message"]
    assert message.startswith("tv and video: weekly spend correlates at 0.925")
    assert "lift test on one of the two" in message and "ROI prior" in message and "grouping them" in message


def test_a_pair_with_lift_tests_still_warns_and_says_they_are_configured():
    table = adequacy_table(*scenario("lift_example.yaml"))
    assert findings(table) == {(CORRELATION, "adwords & facebook", WARN), (VIF, "adwords", WARN),
                               (VIF, "facebook", WARN)}
    assert all("Lift tests are configured" in m for m in failed(table)["message"])


def test_rows_come_worst_first_per_check(realistic):
    table = adequacy_table(*realistic)
    assert list(dict.fromkeys(table["check"])) == list(adequacy.CHECKS)
    correlations = table[table["check"] == CORRELATION]["value"].to_numpy()
    assert (np.diff(correlations) <= 0).all()
    variation = table[table["check"] == VARIATION]["value"].to_numpy()
    assert (np.diff(variation) >= 0).all()


# -- data built to trip each check ---------------------------------------------------------------------------------
def test_a_following_channel_trips_correlation_and_vif(reference):
    cfg, features = reference
    rng = np.random.default_rng(0)
    features = features.assign(facebook=features["adwords"] * 2 + rng.normal(0, 300, len(features)))
    table = adequacy_table(cfg, features)
    assert {(CORRELATION, "adwords & facebook", WARN), (VIF, "adwords", WARN), (VIF, "facebook", WARN)} == findings(
        table
    )
    vif_message = table[(table["check"] == VIF) & (table["subject"] == "facebook")]["message"].iloc[0]
    assert "mostly adwords" in vif_message and "grouping it with adwords" in vif_message


def test_vif_sees_a_channel_made_of_two_others_that_no_pair_shows(reference):
    cfg, features = reference
    mix = features["adwords"] / features["adwords"].std() + features["linkedin"] / features["linkedin"].std()
    rng = np.random.default_rng(1)
    features = features.assign(facebook=mix * 10_000 + rng.normal(0, 500, len(features)) + 50_000)
    table = adequacy_table(cfg, features)
    assert (VIF, "facebook", WARN) in findings(table)
    pairs = table[table["check"] == CORRELATION]
    assert pairs["value"].max() < 0.8  # no single pair gives it away
    message = table[(table["check"] == VIF) & (table["subject"] == "facebook")]["message"].iloc[0]
    assert "adwords" in message and "linkedin" in message


def test_vif_names_the_season_a_channel_follows():
    cfg, features = scenario("roles_example.yaml")
    day = pd.to_datetime(features["date"]).dt.dayofyear.to_numpy()
    rng = np.random.default_rng(2)
    seasonal = 30_000 + 20_000 * np.cos(2 * np.pi * day / 365.25) + rng.normal(0, 1_500, len(features))
    table = adequacy_table(cfg, features.assign(linkedin=seasonal))
    message = table[(table["check"] == VIF) & (table["subject"] == "linkedin")]
    assert message["severity"].iloc[0] == WARN and "the yearly seasonality" in message["message"].iloc[0]


def test_variance_inflation_of_independent_columns_is_near_one_and_of_a_copy_infinite():
    rng = np.random.default_rng(3)
    design = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    assert variance_inflation(design, "a")[0] == pytest.approx(1.0, abs=0.1)
    vif, shares = variance_inflation(design.assign(c=design["a"] * 3), "a")
    assert vif == float("inf") and shares["c"] == pytest.approx(1.0)


def test_too_few_weeks_per_parameter_warn_then_block(reference):
    cfg, features = reference  # 11 parameters, 8 weeks held out
    warn = adequacy_table(cfg, features.head(8 + 30))
    assert (WEEKS, "model", WARN) in findings(warn)  # 30 / 11 = 2.7 < 3
    row = warn[warn["check"] == WEEKS].iloc[0]
    assert row["value"] == pytest.approx(30 / 11) and "30 training weeks (38 minus 8 held out)" in row["message"]
    block = adequacy_table(cfg, features.head(8 + 10))
    assert (WEEKS, "model", ERROR) in findings(block)  # 10 / 11 < 1
    assert "no fit of it can be trusted" in block[block["check"] == WEEKS]["message"].iloc[0]
    assert "more weeks of history" in identification_summary(block)


def test_a_channel_that_hardly_moves_warns_and_one_that_never_moves_blocks(reference):
    cfg, features = reference
    rng = np.random.default_rng(4)
    flat = features.assign(linkedin=50_000 + rng.normal(0, 2_000, len(features)))  # cv ~0.04
    assert (VARIATION, "linkedin", WARN) in findings(adequacy_table(cfg, flat))
    constant = adequacy_table(cfg, features.assign(linkedin=50_000.0))
    assert (VARIATION, "linkedin", ERROR) in findings(constant)
    assert not (constant["check"].eq(CORRELATION) & constant["subject"].str.contains("linkedin")).any()
    message = constant[constant["check"] == VARIATION]["message"].iloc[0]
    assert "never changes" in message and "vary its spend" in message


def test_mostly_zero_spend_warns_and_always_zero_blocks(reference):
    cfg, features = reference
    off = np.arange(len(features)) % 10 < 8  # flighting: 8 weeks of every 10 off
    table = adequacy_table(cfg, features.assign(facebook=features["facebook"].where(~off, 0.0)))
    assert findings(table) == {(ZEROS, "facebook", WARN)}
    assert "no spend in 81% of the weeks (above 75%)" in table[table["check"] == ZEROS]["message"].iloc[0]
    never = adequacy_table(cfg, features.assign(facebook=0.0))
    assert {(ZEROS, "facebook", ERROR), (VARIATION, "facebook", ERROR)} <= findings(never)


def test_roi_prior_on_a_flagged_channel_is_named():
    cfg, features = scenario("roles_example.yaml")  # ROI prior on adwords
    rng = np.random.default_rng(5)
    table = adequacy_table(cfg, features.assign(facebook=features["adwords"] + rng.normal(0, 300, len(features))))
    message = table[table["check"] == CORRELATION]["message"].iloc[0]
    assert "model.roi_priors covers adwords" in message


def test_configured_bounds_are_used(reference):
    cfg, features = reference
    strict = cfg.model_copy(update={"validation": cfg.validation.model_copy(update={
        "adequacy": cfg.validation.adequacy.model_copy(update={"max_abs_correlation": 0.1, "min_spend_cv": 0.3})})})
    table = adequacy_table(strict, features)
    assert (CORRELATION, "adwords & linkedin", WARN) in findings(table)  # |r| 0.17
    assert (VARIATION, "adwords", WARN) in findings(table)  # cv 0.28


# -- the summary a failed fit's message carries ----------------------------------------------------------------------
def test_summary_names_the_channels_and_what_would_separate_them(realistic):
    summary = identification_summary(adequacy_table(*realistic))
    assert "tv & video (0.925)" in summary and "adwords & shopping (0.924)" in summary
    assert "shopping (18.4)" in summary
    assert "lift test or an ROI prior on one channel of each group" in summary and "grouping them" in summary
    assert "\n" not in summary


# -- what the checks rest on ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [("default.yaml", 11), ("realistic.yaml", 34), ("roles_example.yaml", 24)])
def test_parameter_count_is_the_built_models(name, expected):
    from mmm_assets.core.modelling.build import build_mmm, split_xy

    cfg, features = scenario(name)
    assert sum(parameter_counts(cfg).values()) == expected
    mmm = build_mmm(cfg)
    mmm.build_model(*split_xy(features))
    point = mmm.model.initial_point()
    sizes = [point[mmm.model.rvs_to_values[rv].name].size for rv in mmm.model.free_RVs]
    assert sum(sizes) == expected


def test_heatmap_is_a_png(realistic):
    cfg, features = realistic
    png = correlation_heatmap(adequacy.spend_correlations(features, cfg.channels), 0.8)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert OK in set(adequacy_table(cfg, features)["severity"])
