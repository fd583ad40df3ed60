"""Numbers by magnitude: small units (spend in thousands), large ones, and both in one sentence or table."""

import math

import pandas as pd
import pytest

from mmm_assets.core.formatting import cell, number, signed, significant


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5234, "1.52"), (0.87349, "0.873"), (2.4, "2.4"), (1.0, "1"), (0.05, "0.05"), (0.00012345, "0.000123"),
        (12.0, "12"), (152.4, "152"), (999.4, "999"),
    ],
)
def test_small_values_keep_three_significant_digits(value, text):
    """Spend kept in thousands: 2.4 stays 2.4 (the advice once printed "total budget 2")."""
    assert number(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12_437.0, "12,400"), (999.6, "1,000"), (150_000.0, "150,000"), (999_999.0, "1M"), (1_234_567.0, "1.23M"),
        (1_200_000.0, "1.2M"), (3.4e9, "3.4B"), (2.5e12, "2.5T"), (1e15, "1e+15"),
    ],
)
def test_large_values_are_rounded_to_significant_digits_with_separators_or_a_suffix(value, text):
    assert number(value) == text


def test_signs_zero_missing_and_infinite_values():
    assert number(-1_234_567.0) == "-1.23M" and number(-0.8734) == "-0.873" and number(-12_437) == "-12,400"
    assert number(0.0) == "0" and number(-0.0) == "0" and number(1e-20) == "1e-20"
    assert number(float("nan")) == "" and number(None) == ""
    assert number(math.inf) == "inf" and number(-math.inf) == "-inf"
    assert signed(1.52) == "+1.52" and signed(-12_437) == "-12,400" and signed(0) == "+0"
    assert number(1.5234, digits=2) == "1.5" and number(12_437, digits=4) == "12,440"


def test_mixed_units_in_one_sentence_each_read_by_their_own_magnitude():
    """Spend in thousands next to conversions in units and a ROAS: none is rounded away."""
    spend_k, optimised_k, conversions, roas = 1.024, 1.443, 12_437.2, 0.8734
    sentence = f"from {number(spend_k)} to {number(optimised_k)}: {number(conversions)} sign-ups, ROAS {number(roas)}"
    assert sentence == "from 1.02 to 1.44: 12,400 sign-ups, ROAS 0.873"


def test_a_table_of_mixed_magnitudes_keeps_a_fourth_digit_for_diagnostics():
    frame = pd.DataFrame({"spend": [0.512, 12.5, 48_750.0, 2_345_678.0], "r_hat": [1.0041, 1.01, 0.99964, 1.0]})
    assert frame["spend"].map(cell).tolist() == ["0.512", "12.5", "48,750", "2.346M"]
    assert frame["r_hat"].map(cell).tolist() == ["1.004", "1.01", "0.9996", "1"]  # not "1" against a gate of 1.01
    assert number(1.0041) == "1" and number(0.99964) == "1"  # why a sentence's three digits are not for tables


def test_significant_keeps_floats_for_metadata_without_rounding_to_integers():
    assert significant(2.4375123) == 2.43751 and significant(2_437_512.3) == 2_437_510.0
    assert significant(0.0) == 0.0 and math.isnan(significant(math.nan)) and significant(math.inf) == math.inf
    assert significant(0.000123456789, 3) == 0.000123


def test_halves_round_away_from_zero_as_people_round():
    assert number(13_050.0) == "13,100" and number(14_850.0) == "14,900" and number(0.125, digits=2) == "0.13"
    assert number(-2.675, digits=3) == "-2.68" and number(1_235_000.0) == "1.24M" and significant(2.5, 1) == 3.0
