"""Loading and validation: every error a user can make gets a message naming the place."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import DataConfig
from training.data import DataError, load_dataset, season_for

REPO = Path(__file__).resolve().parents[1]
AIRLINE = REPO / "data" / "airline.csv"


def write_csv(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


def monthly(n: int, start: str = "2000-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="MS")


def test_demo_data_loads_with_frequency_and_fingerprint():
    ds = load_dataset(DataConfig(path=AIRLINE))
    assert len(ds.series) == 1
    assert ds.targets == ["value"] and ds.covariates == []
    assert ds.frequency == "MS"
    assert ds.series[0].values.shape == (144, 1)
    assert ds.series[0].values.dtype == np.float32
    assert ds.series[0].values[0, 0] == 112
    again = load_dataset(DataConfig(path=AIRLINE))
    assert ds.fingerprint == again.fingerprint and len(ds.fingerprint) == 64


def test_parquet_and_csv_give_the_same_series(tmp_path):
    df = pd.read_csv(AIRLINE)
    df.to_parquet(tmp_path / "airline.parquet")  # same stem, same series id
    a = load_dataset(DataConfig(path=AIRLINE))
    b = load_dataset(DataConfig(path=tmp_path / "airline.parquet"))
    np.testing.assert_array_equal(a.series[0].values, b.series[0].values)
    assert a.fingerprint == b.fingerprint


def test_long_layout_many_series_with_unequal_lengths(tmp_path):
    rows = [("a", t, float(i)) for i, t in enumerate(monthly(30))]
    rows += [("b", t, float(100 + i)) for i, t in enumerate(monthly(20, "2001-01-01"))]
    pd.DataFrame(rows, columns=["series_id", "timestamp", "value"]).to_csv(tmp_path / "l.csv", index=False)
    ds = load_dataset(DataConfig(path=tmp_path / "l.csv", layout="long"))
    assert [s.id for s in ds.series] == ["a", "b"]
    assert [len(s.values) for s in ds.series] == [30, 20]
    assert ds.series[1].values[0, 0] == 100


def test_wide_columns_as_series_and_as_features(tmp_path):
    df = pd.DataFrame({"timestamp": monthly(10), "x": np.arange(10.0), "y": np.arange(10.0) * 2})
    df.to_csv(tmp_path / "w.csv", index=False)
    as_features = load_dataset(DataConfig(path=tmp_path / "w.csv"))
    assert as_features.targets == ["x", "y"] and len(as_features.series) == 1
    assert as_features.series[0].values.shape == (10, 2)
    as_series = load_dataset(DataConfig(path=tmp_path / "w.csv", columns="series"))
    assert [s.id for s in as_series.series] == ["x", "y"]
    assert as_series.targets == ["value"]
    np.testing.assert_array_equal(as_series.series[1].values[:, 0], np.arange(10.0) * 2)


def test_covariates_follow_targets(tmp_path):
    df = pd.DataFrame({"timestamp": monthly(8), "temp": np.ones(8), "load": np.arange(8.0)})
    df.to_csv(tmp_path / "c.csv", index=False)
    ds = load_dataset(DataConfig(path=tmp_path / "c.csv", targets=["load"], covariates=["temp"]))
    assert ds.features == ["load", "temp"]
    np.testing.assert_array_equal(ds.series[0].values[:, 0], np.arange(8.0))


def test_year_timestamps_are_years(tmp_path):
    path = write_csv(tmp_path, "timestamp,value\n1821,1\n1822,2\n1823,3\n1824,4")
    ds = load_dataset(DataConfig(path=path))
    assert ds.series[0].timestamps[0] == pd.Timestamp("1821-01-01")
    assert ds.frequency is not None and ds.frequency.startswith("YS")


def test_short_nan_gap_is_interpolated_and_ends_are_trimmed(tmp_path):
    column = ["", 1, 2, "", "", 5, 6, 7, 8, 9, 10, ""]
    text = "timestamp,value\n" + "\n".join(f"2000-{m:02d}-01,{v}" for m, v in enumerate(column, start=1))
    ds = load_dataset(DataConfig(path=write_csv(tmp_path, text), max_gap=2))
    values = ds.series[0].values[:, 0]
    np.testing.assert_allclose(values, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert ds.series[0].timestamps[0] == pd.Timestamp("2000-02-01")


@pytest.mark.parametrize(
    ("text", "config", "expected"),
    [
        pytest.param(
            "timestamp,value\n2000-01-01,1",
            {"targets": ["sales"]},
            r"target column\(s\) \['sales'\] not found; the columns are \['timestamp', 'value'\]",
            id="missing-target",
        ),
        pytest.param(
            "time,value\n2000-01-01,1",
            {},
            r"timestamp column\(s\) \['timestamp'\] not found",
            id="missing-timestamp",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1",
            {"covariates": ["temp"]},
            r"covariate column\(s\) \['temp'\] not found",
            id="missing-covariate",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1",
            {"layout": "long"},
            r"series_id column\(s\) \['series_id'\] not found",
            id="missing-series-id",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1\n2000-02-01,abc\n2000-03-01,3",
            {},
            r"column 'value' is not numeric: row 2 has 'abc'",
            id="non-numeric",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1\n2000-13-45,2\n2000-03-01,3",
            {},
            r"column 'timestamp': 1 timestamp\(s\) cannot be parsed: row 2 \('2000-13-45'\)",
            id="bad-timestamp",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1\n2000-02-01,2\n2000-02-01,3\n2000-03-01,4",
            {},
            r"duplicate timestamp 2000-02-01 00:00:00 at rows 2 and 3",
            id="duplicate",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1\n2000-03-01,2\n2000-02-01,3\n2000-04-01,4",
            {},
            r"timestamps are not sorted: row 3 \(2000-02-01 00:00:00\) comes after row 2",
            id="unsorted",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1\n2000-02-01,2\n2000-03-01,3\n2000-05-01,4\n2000-06-01,5",
            {},
            r"irregular spacing at row 4: expected 2000-04-01 00:00:00 .*found 2000-05-01",
            id="irregular",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,1\n2000-02-01,\n2000-03-01,\n2000-04-01,\n2000-05-01,5",
            {"max_gap": 2},
            r"series 'd', column 'value': 3 missing values in a row at rows 2-4",
            id="long-nan-gap",
        ),
        pytest.param(
            "timestamp,value\n2000-01-01,\n2000-02-01,", {}, r"no row has every value present", id="all-nan"
        ),
    ],
)
def test_validation_errors_name_the_problem(tmp_path, text, config, expected):
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(path=write_csv(tmp_path, text), **config))


def test_missing_file_and_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(path=tmp_path / "nope.csv"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read as parquet"):
        load_dataset(DataConfig(path=bad))


def test_duplicate_within_one_series_of_a_long_file(tmp_path):
    text = "series_id,timestamp,value\na,2000-01-01,1\nb,2000-01-01,1\na,2000-01-01,2"
    with pytest.raises(DataError, match=r"series 'a': duplicate timestamp"):
        load_dataset(DataConfig(path=write_csv(tmp_path, text), layout="long"))


@pytest.mark.parametrize(
    ("freq", "season"),
    [
        ("MS", 12),
        ("ME", 12),
        ("QS-OCT", 4),
        ("W-SUN", 52),
        ("D", 7),
        ("h", 24),
        ("30min", 48),
        ("YS-JAN", 1),
        (None, 1),
    ],
)
def test_season_from_frequency(freq, season):
    assert season_for(freq) == season


# ---------------------------------------------------------------- the time column


def stamps_csv(tmp_path: Path, stamps, name: str = "d.csv", sep: str = ",", fmt: str | None = None) -> Path:
    """A ``timestamp, value`` file; ``fmt`` writes dates with strftime, else each stamp as str()."""
    text = [s.strftime(fmt) if fmt else str(s) for s in stamps]
    path = tmp_path / name
    path.write_text(f"timestamp{sep}value\n" + "".join(f"{t}{sep}{i}\n" for i, t in enumerate(text)))
    return path


def months(start: str, n: int, every: int = 1) -> list[pd.Timestamp]:
    return [pd.Timestamp(start) + pd.DateOffset(months=every * k) for k in range(n)]


PANDAS_2_2 = tuple(int(p) for p in pd.__version__.split(".")[:2]) >= (2, 2)


@pytest.mark.parametrize(
    ("stamps", "frequency", "season"),
    [
        pytest.param(months("2000-01-15", 30), "MS-15", 12, id="15th"),
        pytest.param(months("2000-01-30", 30), "MS-30", 12, id="30th-and-feb-29"),
        pytest.param(list(pd.date_range("2000-01-31", periods=30, freq="ME")), "ME", 12, id="month-end"),
        pytest.param(months("2000-02-15", 20, every=3), "3MS-15", 4, id="quarterly-15th"),
        pytest.param(months("2000-07-15", 20, every=12), "12MS-15", 1, id="yearly-15th"),
    ],
)
def test_monthly_data_on_any_day_of_the_month_trains(tmp_path, stamps, frequency, season):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, stamps)))
    if frequency == "ME" and not PANDAS_2_2:
        frequency = "M"
    assert ds.frequency == frequency
    assert season_for(ds.frequency) == season
    assert list(ds.series[0].timestamps) == stamps


def test_day_30_follows_short_months_to_their_last_day(tmp_path):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, months("2000-01-30", 14))))
    assert ds.series[0].timestamps[1] == pd.Timestamp("2000-02-29")
    assert ds.series[0].timestamps[13] == pd.Timestamp("2001-02-28")


def test_a_missing_month_on_the_15th_names_both_rows(tmp_path):
    stamps = months("2000-01-15", 12)
    path = stamps_csv(tmp_path, stamps[:5] + stamps[6:])
    expected = (
        r"irregular spacing at row 6: expected 2000-06-15 00:00:00 after row 5 \(2000-05-15 00:00:00\) "
        r"at frequency MS-15, found 2000-07-15 00:00:00"
    )
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(path=path))


def test_explicit_frequency_off_the_first_row_names_row_1_not_the_last_row(tmp_path):
    path = stamps_csv(tmp_path, months("2000-01-15", 12))
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(path=path, frequency="MS"))
    message = str(err.value)
    assert "row 1 (2000-01-15 00:00:00) is not a date of frequency MS (the next one is 2000-02-01" in message
    assert "2000-12-15" not in message  # the last row is no neighbour of the first


def test_gap_in_the_first_step_is_a_spacing_error_naming_rows_1_and_2(tmp_path):
    path = stamps_csv(tmp_path, ["2000-01-01", "2000-03-01", "2000-04-01", "2000-05-01", "2000-06-01"])
    expected = r"irregular spacing at row 2: expected 2000-02-01 00:00:00 after row 1 \(2000-01-01 00:00:00\)"
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(path=path))


def test_spacing_error_in_a_long_file_names_the_series_own_previous_row(tmp_path):
    rows = [("a", "2000-01-01"), ("b", "2000-01-01"), ("a", "2000-02-01"), ("b", "2000-02-01")]
    rows += [("a", "2000-03-01"), ("b", "2000-03-01"), ("a", "2000-05-01"), ("b", "2000-04-01")]
    text = "series_id,timestamp,value\n" + "\n".join(f"{s},{t},1" for s, t in rows)
    expected = (
        r"series 'a': irregular spacing at row 7: expected 2000-04-01 00:00:00 after row 5 \(2000-03-01"
    )
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(path=write_csv(tmp_path, text), layout="long"))


def test_non_adjacent_duplicate_names_both_rows(tmp_path):
    path = stamps_csv(tmp_path, ["2000-01-01", "2000-02-01", "2000-03-01", "2000-01-01"])
    with pytest.raises(DataError, match=r"duplicate timestamp 2000-01-01 00:00:00 at rows 1 and 4"):
        load_dataset(DataConfig(path=path))


DAYS = pd.date_range("2020-01-01", periods=40, freq="D")


@pytest.mark.parametrize(
    "option", [{"dayfirst": True}, {"date_format": "%d/%m/%Y"}], ids=["dayfirst", "format"]
)
def test_day_first_dates_parse_with_dayfirst_or_date_format(tmp_path, option):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, DAYS, fmt="%d/%m/%Y"), **option))
    assert ds.frequency == "D"
    assert ds.series[0].timestamps[1] == pd.Timestamp("2020-01-02")  # 02/01/2020 is 2 January
    assert ds.series[0].timestamps[12] == pd.Timestamp("2020-01-13")


def test_day_first_dates_without_the_option_fail_and_say_which_option(tmp_path):
    path = stamps_csv(tmp_path, DAYS, fmt="%d/%m/%Y")
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(path=path))
    message = str(err.value)
    assert "cannot be parsed: row 13 ('13/01/2020')" in message
    assert "data.dayfirst = true" in message and "data.date_format = '%d/%m/%Y'" in message


def test_unambiguous_day_first_dates_are_still_read_month_first_by_default(tmp_path):
    path = stamps_csv(tmp_path, DAYS[12:20], fmt="%d/%m/%Y")  # 13/01/2020, 14/01/2020, ...
    with pytest.raises(DataError, match=r"row 1 \('13/01/2020'\).*data\.dayfirst = true"):
        load_dataset(DataConfig(path=path))
    ds = load_dataset(DataConfig(path=path, dayfirst=True))
    assert ds.series[0].timestamps[0] == pd.Timestamp("2020-01-13")


def test_day_first_monthly_dates_that_read_month_first_as_days_get_the_hint(tmp_path):
    path = stamps_csv(tmp_path, pd.date_range("2020-01-01", periods=24, freq="MS"), fmt="%d/%m/%Y")
    # month-first, 01/02/2020 .. 01/12/2020 are 2 to 12 January: a daily series that then jumps
    with pytest.raises(DataError, match=r"irregular spacing at row 13: .*data\.dayfirst = true"):
        load_dataset(DataConfig(path=path))
    assert load_dataset(DataConfig(path=path, dayfirst=True)).frequency == "MS"


def test_dayfirst_leaves_iso_dates_alone_and_month_first_is_the_default(tmp_path):
    iso = load_dataset(DataConfig(path=stamps_csv(tmp_path, DAYS, name="iso.csv"), dayfirst=True))
    assert iso.series[0].timestamps[1] == pd.Timestamp("2020-01-02")
    us = load_dataset(DataConfig(path=stamps_csv(tmp_path, DAYS, name="us.csv", fmt="%m/%d/%Y")))
    assert us.series[0].timestamps[1] == pd.Timestamp("2020-01-02") and us.frequency == "D"


def test_date_format_that_does_not_match_names_rows_and_the_format(tmp_path):
    path = stamps_csv(tmp_path, DAYS, fmt="%Y-%m-%d")
    with pytest.raises(
        DataError, match=r"40 timestamp\(s\) cannot be parsed: row 1 \('2020-01-01'\).*'%d/%m/%Y'"
    ):
        load_dataset(DataConfig(path=path, date_format="%d/%m/%Y"))


@pytest.mark.parametrize("sep", [";", "\t"], ids=["semicolon", "tab"])
def test_delimiter(tmp_path, sep):
    path = stamps_csv(tmp_path, DAYS, sep=sep)
    ds = load_dataset(DataConfig(path=path, delimiter=sep))
    assert ds.frequency == "D" and ds.series[0].values[-1, 0] == 39
    with pytest.raises(DataError, match=re.escape(f"is one field; set data.delimiter = {sep!r}")):
        load_dataset(DataConfig(path=path))


@pytest.mark.parametrize(
    ("alias", "current", "stamps"),
    [
        ("M", "ME", pd.date_range("2000-01-31", periods=12, freq="ME")),
        ("Q", "QE", pd.date_range("2000-03-31", periods=12, freq="QE")),
        ("Q-DEC", "QE-DEC", pd.date_range("2000-03-31", periods=12, freq="QE")),
        ("A", "YE", pd.date_range("2000-12-31", periods=12, freq="YE")),
        ("Y", "YE", pd.date_range("2000-12-31", periods=12, freq="YE")),
        ("AS", "YS", pd.date_range("2000-01-01", periods=12, freq="YS")),
        ("A-JUN", "YE-JUN", pd.date_range("2000-06-30", periods=12, freq="YE-JUN")),
        ("H", "h", pd.date_range("2000-01-01", periods=12, freq="h")),
        ("2H", "2h", pd.date_range("2000-01-01", periods=12, freq="2h")),
        ("T", "min", pd.date_range("2000-01-01", periods=12, freq="min")),
        ("30S", "30s", pd.date_range("2000-01-01", periods=12, freq="30s")),
        ("BM", "BME", pd.date_range("2000-01-31", periods=12, freq="BME")),
        ("BQ", "BQE", pd.date_range("2000-03-31", periods=12, freq="BQE")),
        ("MS", "MS", pd.date_range("2000-01-01", periods=12, freq="MS")),
    ],
)
def test_old_frequency_aliases_are_accepted(tmp_path, alias, current, stamps):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, stamps), frequency=alias))
    if PANDAS_2_2:  # older pandas keeps the old spelling, which it still knows
        assert ds.frequency == current
    assert list(pd.date_range(stamps[0], periods=len(stamps), freq=ds.frequency)) == list(stamps)


def test_unknown_frequency_alias_names_the_setting(tmp_path):
    path = stamps_csv(tmp_path, DAYS)
    with pytest.raises(DataError, match=r"data\.frequency = 'XYZ' is not a frequency alias pandas knows"):
        load_dataset(DataConfig(path=path, frequency="XYZ"))


@pytest.mark.parametrize(
    ("freq", "season"),
    [("M", 12), ("Q", 4), ("H", 24), ("T", 1440), ("BM", 12), ("MS-15", 12), ("3MS-15", 4), ("12MS-15", 1)],
)
def test_season_from_old_aliases_and_month_days(freq, season):
    assert season_for(freq) == season


@pytest.mark.parametrize(
    ("first", "last"), [(0, 1859), (-500, 2000), (1, 150)], ids=["from-0", "negative-years", "from-1"]
)
def test_integer_timestamps_are_step_numbers_not_nanoseconds(tmp_path, first, last):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, range(first, last + 1))))
    ts = ds.series[0].timestamps
    assert not isinstance(ts, pd.DatetimeIndex) and ts.dtype == np.int64
    assert (ts[0], ts[-1], len(ts)) == (first, last, last - first + 1)
    assert ds.frequency is None and season_for(ds.frequency) == 1
    assert str(min(s.timestamps[0] for s in ds.series)) == str(first)  # the manifest's data.start
    assert len(ds.fingerprint) == 64


def test_integer_steps_of_5_and_a_missing_step(tmp_path):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, range(0, 100, 5))))
    assert ds.series[0].timestamps[1] == 5 and ds.frequency is None
    path = stamps_csv(tmp_path, [0, 1, 2, 4, 5, 6], name="gap.csv")
    with pytest.raises(
        DataError, match=r"irregular spacing at row 4: expected 3 after row 3 \(2\) at step 1, found 4"
    ):
        load_dataset(DataConfig(path=path))


def test_four_digit_years_before_1678_and_yyyymmdd_integers_are_dates(tmp_path):
    years = load_dataset(DataConfig(path=stamps_csv(tmp_path, range(1000, 1100), name="y.csv")))
    assert years.series[0].timestamps[0] == pd.Timestamp("1000-01-01")
    assert years.frequency is not None and years.frequency.startswith("YS")
    assert len(years.fingerprint) == 64  # not representable in nanoseconds
    ymd = load_dataset(DataConfig(path=stamps_csv(tmp_path, [int(d.strftime("%Y%m%d")) for d in DAYS])))
    assert ymd.frequency == "D" and ymd.series[0].timestamps[31] == pd.Timestamp("2020-02-01")


def test_fractional_numbers_are_not_timestamps(tmp_path):
    path = stamps_csv(tmp_path, [1990.0, 1990.5, 1991.0])
    with pytest.raises(DataError, match=r"1 timestamp\(s\) are not dates or whole numbers: row 2 \(1990.5\)"):
        load_dataset(DataConfig(path=path))


def test_fingerprint_tells_step_numbers_apart(tmp_path):
    a = load_dataset(DataConfig(path=stamps_csv(tmp_path, range(0, 10), name="a.csv")))
    b = load_dataset(DataConfig(path=stamps_csv(tmp_path, range(0, 20, 2), name="a.csv")))
    assert a.fingerprint != b.fingerprint


TRADING = pd.bdate_range("2020-01-02", periods=40).drop(pd.to_datetime(["2020-01-20", "2020-02-17"]))


def test_steps_time_rejects_a_trading_calendar_naming_the_rows_around_the_holiday(tmp_path):
    path = stamps_csv(tmp_path, TRADING)
    expected = (
        r"irregular spacing at row 13: expected 2020-01-20 00:00:00 after row 12 \(2020-01-17 00:00:00\) "
        r"at frequency B, found 2020-01-21 00:00:00.*data\.steps = \"rows\""
    )
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(path=path))


def test_steps_rows_accepts_a_trading_calendar(tmp_path):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, TRADING), steps="rows"))
    assert ds.frequency is None
    assert list(ds.series[0].timestamps) == list(TRADING)  # the real dates, holidays left out
    assert ds.series[0].values.shape == (38, 1)
    explicit = load_dataset(DataConfig(path=stamps_csv(tmp_path, TRADING), steps="rows", frequency="B"))
    assert explicit.frequency == "B"  # kept, though the holidays do not follow it


def test_steps_rows_still_needs_increasing_timestamps(tmp_path):
    path = stamps_csv(tmp_path, [TRADING[0], TRADING[2], TRADING[1], TRADING[3]])
    expected = r"not sorted: row 3 \(2020-01-03 00:00:00\) comes after row 2 \(2020-01-06 00:00:00\)"
    with pytest.raises(DataError, match=expected):
        load_dataset(DataConfig(path=path, steps="rows"))


def test_steps_rows_accepts_integer_steps_with_gaps(tmp_path):
    ds = load_dataset(DataConfig(path=stamps_csv(tmp_path, [1, 2, 5, 6, 9]), steps="rows"))
    assert list(ds.series[0].timestamps) == [1, 2, 5, 6, 9] and ds.frequency is None
