"""Forecast timestamps without pandas agree with pandas.date_range on the aliases the trainer infers."""

from __future__ import annotations

import random
from datetime import datetime

import pandas as pd
import pytest

from service.bundle.timeindex import format_timestamps, parse_frequency, parse_timestamp

ALIASES = ["MS", "ME", "QS", "QS-OCT", "QE", "QE-NOV", "YS", "YE", "YS-JUL", "2MS", "2QE", "D", "h", "30min",
           "15s", "W", "W-MON", "2W", "B", "3B"]  # fmt: skip


@pytest.mark.parametrize("alias", ALIASES)
def test_steps_match_pandas(alias: str) -> None:
    freq = parse_frequency(alias)
    assert freq is not None
    rng = random.Random(alias)
    for _ in range(60):
        t = (
            pd.Timestamp(2000, 1, 1) + pd.Timedelta(days=rng.randint(0, 9000), hours=rng.choice([0, 7]))
        ).to_pydatetime()
        expected = [s.to_pydatetime() for s in pd.date_range(t, periods=6, freq=alias)]
        # On the offset, the steps follow t; off it, the first is t rolled forward.
        expected = expected[1:] if expected[0] == t else expected[:5]
        assert freq.after(t, 5) == expected, (alias, t)
        n = rng.randint(1, 40)
        assert freq.last_of(t, n) == pd.date_range(t, periods=n, freq=alias)[-1].to_pydatetime(), (
            alias,
            t,
            n,
        )


@pytest.mark.parametrize("alias", [None, "", "SMS", "BMS", "MS-JAN", "W-XYZ", "QS-FOO", "0D", "ns", "C", "7"])
def test_unknown_aliases_give_no_frequency(alias: str | None) -> None:
    assert parse_frequency(alias) is None


def test_timestamps_round_trip_in_the_client_format() -> None:
    assert parse_timestamp("1949-01-01") == (datetime(1949, 1, 1), True)
    t, bare = parse_timestamp("2026-03-01T10:00:00Z")
    assert not bare and t.utcoffset() is not None
    freq = parse_frequency("h")
    assert freq is not None
    assert format_timestamps(freq.after(t, 1), bare) == ["2026-03-01T11:00:00+00:00"]
    months = parse_frequency("MS")
    assert months is not None
    assert format_timestamps(months.after(datetime(1960, 12, 1), 2), True) == ["1961-01-01", "1961-02-01"]
    with pytest.raises(ValueError):
        parse_timestamp("not a date")
