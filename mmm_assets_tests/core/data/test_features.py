"""Validation of the canonical weekly frame: every rule, and all problems reported together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.data.features import SOURCE_COLUMNS_ATTR, validate_features
from mmm_assets.core.errors import InputError

CHANNELS = ["tv", "search"]
CONTROLS = ["price"]
SOURCE = "landing/spend.csv"


def weekly(n: int = 10, start: str = "2021-01-04") -> pd.DataFrame:
    """A valid weekly frame of ``n`` Mondays."""
    step = np.arange(n, dtype="float64")
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=n, freq="7D"),
            "y": 1000 + 10 * step,
            "tv": 100 + step,
            "search": 50 + 2 * step,
            "price": np.full(n, 9.99),
        }
    )


def validate(frame: pd.DataFrame, min_weeks: int = 4) -> pd.DataFrame:
    return validate_features(frame, CHANNELS, CONTROLS, min_weeks, SOURCE)


def problems(frame: pd.DataFrame, min_weeks: int = 4) -> str:
    """The message of the InputError for ``frame``; it always starts with the source label."""
    with pytest.raises(InputError) as excinfo:
        validate(frame, min_weeks)
    message = str(excinfo.value)
    assert message.startswith(f"{SOURCE}: ")
    return message


def with_value(column: str, row: int, value: object) -> pd.DataFrame:
    frame = weekly()
    frame.loc[row, column] = value
    return frame


def test_valid_frame_is_sorted_typed_and_input_untouched() -> None:
    frame = weekly().sample(frac=1, random_state=1)
    frame.index = frame.index * 3 + 7
    frame["tv"] = frame["tv"].astype("int64")
    frame["extra"] = "ignored"
    frame = frame[["price", "extra", "search", "date", "tv", "y"]]
    before = frame.copy()

    out = validate(frame)

    pd.testing.assert_frame_equal(frame, before)
    assert list(out.columns) == ["date", "y", "tv", "search", "price"]
    assert isinstance(out.index, pd.RangeIndex) and out.index.start == 0
    assert out["date"].is_monotonic_increasing
    assert str(out["date"].dtype) == "datetime64[ns]"
    assert all(out[c].dtype == "float64" for c in ["y", "tv", "search", "price"])
    pd.testing.assert_frame_equal(out, weekly().astype({"tv": "float64"}))


def test_missing_columns() -> None:
    message = problems(weekly().drop(columns=["search", "price"]))
    assert "'search', 'price' missing" in message


def test_wrong_column_types() -> None:
    frame = weekly().astype({"date": str, "tv": str})
    message = problems(frame)
    assert "column 'date' has type object; expected time-zone-naive dates" in message
    assert "column 'tv' (channel) has type object; expected numbers" in message


@pytest.mark.parametrize(
    ("column", "value", "role"),
    [("y", np.nan, "target"), ("tv", np.inf, "channel"), ("price", -np.inf, "control")],
)
def test_missing_or_non_finite(column: str, value: float, role: str) -> None:
    message = problems(with_value(column, 2, value))
    assert f"column {column!r} ({role}): missing or non-finite value on 2021-01-18" in message


def test_missing_date_names_the_row() -> None:
    message = problems(with_value("date", 9, pd.NaT))
    assert "column 'date': missing date in row 10" in message


def test_duplicate_dates() -> None:
    frame = weekly()
    frame.loc[3, "date"] = frame.loc[2, "date"]
    frame.loc[4, "date"] = frame.loc[2, "date"]
    message = problems(frame)
    assert "duplicate dates: 2021-01-18 (3 rows)" in message
    assert "no row for week(s) 2021-01-25, 2021-02-01" in message


def test_gaps_name_the_missing_weeks() -> None:
    frame = weekly().drop(index=[2, 3, 7]).reset_index(drop=True)
    message = problems(frame)
    assert "no row for week(s) 2021-01-18, 2021-01-25, 2021-02-22; the weeks must be contiguous" in message


def test_daily_data_is_not_weekly() -> None:
    frame = weekly()
    frame["date"] = pd.date_range("2021-01-04", periods=10, freq="D")
    message = problems(frame)
    assert "dates are not weekly: found steps of 1 day between 2021-01-04 and 2021-01-05" in message
    assert "and 4 more" in message
    assert "one row per week" in message


def test_off_cadence_date() -> None:
    message = problems(with_value("date", 9, pd.Timestamp("2021-03-10")))
    assert "found steps of 9 days between 2021-03-01 and 2021-03-10" in message


def test_negative_spend() -> None:
    message = problems(with_value("search", 4, -12.5))
    assert "column 'search' (channel): negative spend on 2021-02-01 (-12.5)" in message


def test_too_few_weeks() -> None:
    message = problems(weekly(), min_weeks=52)
    assert "found 10 weeks, at least 52 are needed" in message


def test_channel_without_spend() -> None:
    frame = weekly()
    frame["tv"] = 0.0
    message = problems(frame)
    assert "channel 'tv' has no spend in any week; remove it from the column mapping" in message


def test_constant_target() -> None:
    frame = weekly()
    frame["y"] = 500.0
    message = problems(frame)
    assert "target is constant (500 in every week); the model cannot explain it" in message


@pytest.mark.parametrize("value", [0.0, -3.0])
def test_target_not_positive(value: float) -> None:
    message = problems(with_value("y", 1, value))
    assert f"column 'y' (target): zero or negative on 2021-01-11 ({value:g})" in message
    assert "MAPE" in message


#: How a landing file named the columns of ``weekly()`` (what core/data/ingest.py records in the frame's attrs).
OWN_NAMES = {"date": "Week Start", "y": "Revenue (EUR)", "tv": "TV Spend", "search": "Search", "price": "Avg Price"}


def with_own_names(frame: pd.DataFrame) -> pd.DataFrame:
    frame.attrs[SOURCE_COLUMNS_ATTR] = OWN_NAMES
    return frame


def test_target_problems_name_the_files_own_column() -> None:
    frame = with_own_names(weekly())
    frame["y"] = 500.0
    assert "column 'Revenue (EUR)' (target): the target is constant (500 in every week)" in problems(frame)
    message = problems(with_own_names(with_value("y", 1, -3.0)))
    assert "column 'Revenue (EUR)' (target): zero or negative on 2021-01-11 (-3)" in message
    assert "'y'" not in message


def test_every_column_is_named_as_the_file_names_it() -> None:
    frame = with_own_names(with_value("tv", 2, -1.0))
    frame.loc[3, "price"] = np.nan
    frame["search"] = 0.0
    message = problems(frame)
    assert "column 'TV Spend' (channel 'tv'): negative spend on 2021-01-18 (-1)" in message
    assert "column 'Avg Price' (control 'price'): missing or non-finite value on 2021-01-25" in message
    assert "column 'Search' (channel 'search') has no spend in any week" in message
    message = problems(with_own_names(with_value("date", 9, pd.NaT)))
    assert "column 'Week Start' (date): missing date in row 10" in message


def test_long_lists_are_cut_with_and_more() -> None:
    frame = weekly()
    frame.loc[1:8, "y"] = -1.0
    message = problems(frame)
    assert "2021-02-08 (-1) and 3 more" in message
    assert "2021-02-15" not in message


def test_several_problems_in_one_error() -> None:
    frame = weekly().drop(index=[5]).reset_index(drop=True)
    frame.loc[0, "y"] = np.nan
    frame.loc[1, "tv"] = -1.0
    frame["search"] = 0.0
    message = problems(frame, min_weeks=20)
    assert "5 problem(s) found" in message
    for expected in [
        "column 'y' (target): missing or non-finite value on 2021-01-04",
        "column 'tv' (channel): negative spend on 2021-01-11 (-1)",
        "channel 'search' has no spend in any week",
        "no row for week(s) 2021-02-08",
        "found 9 weeks, at least 20 are needed",
    ]:
        assert expected in message
