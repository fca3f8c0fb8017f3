"""Loading and validation: every error a user can make gets a message naming the place."""

from __future__ import annotations

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
