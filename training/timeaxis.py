"""The time column: timestamps as users write them, frequency aliases and the spacing check.

A time column holds
- dates: ISO 8601, or one format for the whole column read month-first
  (``03/04/2020`` is 4 March) unless ``dayfirst``, or exactly ``date_format``;
- four-digit years (``1821``: 1 January 1821) or ``yyyymmdd`` integers (``20200115``);
- any other integers (``0, 1, 2``, ``-500``, a 1-based row counter): step numbers,
  never nanoseconds since 1970. They stay an int64 ``pd.Index`` and have no frequency.

Frequencies are pandas aliases in the installed pandas' spelling (an old ``M`` becomes
``ME`` on pandas >= 2.2, a new ``ME`` becomes ``M`` on older ones), plus ``MS-15``:
``n`` months apart on day 15 (the last day of shorter months), which pandas has no alias
for (monthly data dated on the 15th). The service cannot step ``MS-15`` and leaves
such forecasts undated.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

try:
    from pandas.tseries.api import guess_datetime_format
except ImportError:  # pandas < 2.2
    from pandas._libs.tslibs.parsing import guess_datetime_format


class DataError(ValueError):
    """The data cannot be used as given; the message says where and why."""


class TimestampError(DataError):
    """A timestamp problem: the caller may add how the dates would read the other way round."""


# Aliases pandas 2.2 deprecated and pandas 3 refuses, and the reverse for pandas < 2.2.
_RENAMED = {
    **{"M": "ME", "Q": "QE", "A": "YE", "Y": "YE", "AS": "YS", "BA": "BYE", "BY": "BYE", "BAS": "BYS"},
    **{"BM": "BME", "BQ": "BQE", "SM": "SME", "CBM": "CBME", "H": "h", "BH": "bh", "CBH": "cbh"},
    **{"T": "min", "S": "s", "L": "ms", "U": "us", "N": "ns", "d": "D", "w": "W", "b": "B"},
}
_OLD = {
    **{"ME": "M", "QE": "Q", "YE": "A", "YS": "AS", "BYE": "BA", "BYS": "BAS", "BME": "BM", "BQE": "BQ"},
    **{"SME": "SM", "CBME": "CBM", "h": "H", "bh": "BH", "cbh": "CBH", "min": "T", "s": "S", "ms": "L"},
    **{"us": "U", "ns": "N"},
}
_ALIAS = re.compile(r"^(\d*)([A-Za-z]+)(-\w+)?$")
_MONTH_DAY = re.compile(r"^(\d*)MS-(\d{1,2})$")
_SUGGEST = "'D', 'h', '30min', 'W-SUN', 'B', 'MS', 'ME', 'QS', 'YS', or 'MS-15' for monthly on the 15th"


# ---------------------------------------------------------------- frequencies


def _pandas_knows(alias: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated spelling counts as unknown: it warns on every use
        try:
            to_offset(alias)
        except (ValueError, TypeError, Warning):
            return False
    return True


def normalize_frequency(alias: str) -> str:
    """``alias`` as the installed pandas spells it (``M`` -> ``ME`` on pandas 3); DataError if unknown."""
    text = alias.strip()
    day = _MONTH_DAY.match(text)
    if day and int(day.group(1) or 1) >= 1 and 1 <= int(day.group(2)) <= 31:
        return text
    candidates = [text]
    match = _ALIAS.match(text)
    if match:
        n, base, anchor = match.groups()
        candidates += [f"{n}{table[base]}{anchor or ''}" for table in (_RENAMED, _OLD) if base in table]
    for candidate in candidates:
        if _pandas_knows(candidate):
            return candidate
    raise DataError(f"data.frequency = {alias!r} is not a frequency alias pandas knows; use e.g. {_SUGGEST}")


def season_for(frequency: str | None) -> int:
    """Seasonal period implied by a frequency alias (1 for none, or none known); DataError if unknown."""
    if not frequency:
        return 1
    day = _MONTH_DAY.match(frequency)
    if day:
        return {1: 12, 3: 4}.get(int(day.group(1) or 1), 1)
    offset = to_offset(normalize_frequency(frequency))
    if isinstance(offset, Tick):  # fixed-length steps: a day of them, or a week of days
        step = pd.Timedelta(offset)
        one_day = pd.Timedelta(days=1)
        if step < one_day and one_day % step == pd.Timedelta(0):
            return int(one_day // step)
        return 7 if step == one_day else 1
    base = offset.rule_code.split("-")[0].lstrip("B")
    if base == "D":
        return 7 if offset.n == 1 else 1
    if base.startswith("M") or base.startswith("SM"):
        return 12 if offset.n == 1 else 1
    if base.startswith("Q"):
        return 4 if offset.n == 1 else 1
    if base.startswith("W"):
        return 52 if offset.n == 1 else 1
    return 1


def _infer_freq(ts: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as a string alias on pandas 2 and 3 (3 warns it will return an offset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(ts)
    return freq if freq is None or isinstance(freq, str) else freq.freqstr


def _month_day_dates(months: int, day: int, first: pd.Timestamp, count: int) -> pd.DatetimeIndex:
    """``count`` dates ``months`` apart from ``first``'s month on ``day`` (or the month's last day)."""
    month = first.to_datetime64().astype("datetime64[M]") + months * np.arange(count)
    start = month.astype("datetime64[D]")
    length = ((month + 1).astype("datetime64[D]") - start).astype(np.int64)
    dates = start + (np.minimum(day, length) - 1)  # computed from the start: the 30th after February
    return pd.DatetimeIndex(dates) + (first - first.normalize())


def _month_day(ts: pd.DatetimeIndex) -> str | None:
    """``nMS-d`` when ``ts`` are n months apart on day d, d > 1 (pandas infers month starts and ends)."""
    months = np.diff(np.asarray(ts.year) * 12 + np.asarray(ts.month))
    day = int(ts.day.max())
    if len(months) == 0 or months[0] < 1 or (months != months[0]).any() or day == 1:
        return None
    alias = f"{months[0] if months[0] > 1 else ''}MS-{day}"
    return alias if (expected_dates(alias, ts[0], len(ts)) == ts).all() else None


def expected_dates(alias: str, first: pd.Timestamp, count: int) -> pd.DatetimeIndex:
    """The ``count`` dates of frequency ``alias`` from ``first`` (or from the next date on it)."""
    day = _MONTH_DAY.match(alias)
    if day:
        return _month_day_dates(int(day.group(1) or 1), int(day.group(2)), first, count)
    return pd.date_range(first, periods=count, freq=alias)


def _guess_frequency(ts: pd.DatetimeIndex) -> str | None:
    """The frequency of the first three evenly spaced rows: the gap may lie among the very first."""
    for start in range(min(len(ts) - 2, 10)):
        probe = ts[start : start + 3]
        found = _infer_freq(probe) or _month_day(probe)
        if found:
            return found
    return None


# ---------------------------------------------------------------- parsing


def _to_datetime(col: pd.Series, fmt: str, dayfirst: bool = False) -> pd.Series:
    """``pd.to_datetime`` with unparseable values as NaT, naive; offsets that change (DST) are put in UTC."""
    try:
        try:
            parsed = pd.to_datetime(col, format=fmt, dayfirst=dayfirst, errors="coerce")
        except ValueError:  # "Mixed timezones detected": wall clocks on both sides of a DST change
            parsed = pd.to_datetime(col, format=fmt, dayfirst=dayfirst, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):  # e.g. a date_format pandas rejects
        return pd.Series(pd.NaT, index=col.index, dtype="datetime64[ns]")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # one offset: the wall clock as written; mixed: UTC
    return parsed


def _format_of(col: pd.Series, dayfirst: bool) -> str | None:
    """The format of the column's first value, read day-first or month-first as asked."""
    values = col.dropna()
    if values.empty:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns when the value only reads the other way round
        fmt = guess_datetime_format(str(values.iloc[0]), dayfirst=dayfirst)
    if fmt is None or "%d" not in fmt or "%m" not in fmt:
        return fmt
    year = re.search("%[Yy]", fmt)
    year_first = year is not None and year.start() < min(fmt.index("%d"), fmt.index("%m"))
    if (fmt.index("%d") < fmt.index("%m")) != (dayfirst and not year_first):  # 2020/01/02 is never Y/d/m
        fmt = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    return fmt


def _unparsed(parsed: pd.Series, col: pd.Series, name: str, how: str) -> None:
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        shown = ", ".join(f"row {r + 1} ({col.iloc[r]!r})" for r in bad[:5])
        raise TimestampError(f"column {name!r}: {len(bad)} timestamp(s) cannot be parsed: {shown}{how}")


def _parse_text(col: pd.Series, name: str, date_format: str | None, dayfirst: bool) -> pd.Series:
    if date_format is not None:
        parsed = _to_datetime(col, date_format)
        _unparsed(parsed, col, name, f" with data.date_format = {date_format!r}")
        return parsed
    iso = _to_datetime(col, "ISO8601")
    if iso.notna().all():
        return iso
    fmt = _format_of(col, dayfirst)
    if fmt is not None:
        parsed = _to_datetime(col, fmt)
        if parsed.notna().all():
            return parsed
        other = _format_of(col, not dayfirst)
        if other is not None and _to_datetime(col, other).notna().all():  # the caller says so
            _unparsed(parsed, col, name, f" read {'day' if dayfirst else 'month'}-first as {fmt!r}")
    parsed = _to_datetime(col, "mixed", dayfirst)  # several formats in one column: value by value
    _unparsed(parsed, col, name, "")
    return parsed


def reading_hint(col: pd.Series, date_format: str | None, dayfirst: bool) -> str:
    """Advice to add to a timestamp error when every date also reads the other way round."""
    text = pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)
    if date_format is not None or not text or _to_datetime(col, "ISO8601").notna().all():
        return ""
    other = _format_of(col, not dayfirst)
    if other is None or _to_datetime(col, other).isna().any():
        return ""
    way, flag = ("month-first", "false") if dayfirst else ("day-first", "true")
    return f"; every date reads {way} too: if so, set data.dayfirst = {flag} or data.date_format = {other!r}"


def _integers(col: pd.Series, name: str) -> np.ndarray:
    values = col.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if len(bad):
        shown = ", ".join(f"row {r + 1} ({values[r]})" for r in bad[:5])
        raise TimestampError(
            f"column {name!r}: {len(bad)} timestamp(s) are not dates or whole numbers: {shown}; "
            f"write dates (2020-01-31), years (1821) or step numbers (0, 1, 2)"
        )
    return col.to_numpy(dtype=np.int64)


def parse_timestamps(col: pd.Series, name: str, date_format: str | None, dayfirst: bool) -> pd.Index:
    """A ``DatetimeIndex`` (naive), or an int64 ``Index`` of step numbers for plain integers."""
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col.dt.tz_localize(None) if getattr(col.dt, "tz", None) is not None else col
        _unparsed(parsed, col, name, "")
        return pd.DatetimeIndex(parsed)
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if numeric and date_format is None:
        ints = _integers(col, name)
        if ((ints >= 1000) & (ints <= 9999)).all():  # years; datetime64[Y] reaches back past 1678
            return pd.DatetimeIndex(ints.astype(str).astype("datetime64[Y]").astype("datetime64[s]"))
        if ((ints >= 10000101) & (ints <= 99991231)).all():
            ymd = _to_datetime(pd.Series(ints.astype(str)), "%Y%m%d")
            if ymd.notna().all():
                return pd.DatetimeIndex(ymd)
        return pd.Index(ints, dtype="int64")  # step numbers, never nanoseconds since 1970
    text = col.astype(str).str.removesuffix(".0").where(col.notna()) if numeric else col
    return pd.DatetimeIndex(_parse_text(text, name, date_format, dayfirst))


# ---------------------------------------------------------------- order and spacing


def check_order(sid: str, ts: pd.Index, rows: np.ndarray) -> None:
    """Timestamps must be unique and increasing; errors name both rows (counted from 1)."""
    values = ts.to_numpy()
    dup = np.flatnonzero(values[1:] == values[:-1])
    if len(dup):
        i = dup[0]
        raise TimestampError(
            f"series {sid!r}: duplicate timestamp {ts[i]} at rows {rows[i] + 1} and {rows[i + 1] + 1}"
        )
    back = np.flatnonzero(values[1:] < values[:-1])
    if len(back) == 0:
        return
    i = back[0]
    again = np.flatnonzero(values[: i + 1] == values[i + 1])
    if len(again):  # not adjacent, so the file is unsorted too: the duplicate is the clearer message
        raise TimestampError(
            f"series {sid!r}: duplicate timestamp {ts[i + 1]} at rows {rows[again[0]] + 1} "
            f"and {rows[i + 1] + 1}"
        )
    raise TimestampError(
        f"series {sid!r}: timestamps are not sorted: row {rows[i + 1] + 1} ({ts[i + 1]}) "
        f"comes after row {rows[i] + 1} ({ts[i]}); sort the file by time"
    )


def _irregular(sid: str, ts: pd.Index, rows: np.ndarray, expected: pd.Index, i: int, step: str) -> DataError:
    return TimestampError(
        f"series {sid!r}: irregular spacing at row {rows[i] + 1}: expected {expected[i]} after row "
        f"{rows[i - 1] + 1} ({ts[i - 1]}) at {step}, found {ts[i]}; add the missing rows (values may be "
        f"NaN, gaps up to max_gap are interpolated) or drop the extra ones; if rows skip a calendar's "
        f'gaps (trading days, business hours), set data.steps = "rows"'
    )


def check_spacing(sid: str, ts: pd.DatetimeIndex, rows: np.ndarray, freq: str | None) -> str | None:
    """Return the series' frequency (``freq`` if given); raise on a missing or extra step."""
    if len(ts) < 3 and freq is None:
        return None
    whole = None if freq else _infer_freq(ts) or _month_day(ts)
    if whole:  # evenly spaced throughout
        return whole
    alias = freq or _guess_frequency(ts)
    if alias is None:
        shown = ", ".join(f"row {r + 1} ({t})" for r, t in zip(rows[:3], ts[:3], strict=True))
        raise TimestampError(
            f"series {sid!r}: cannot infer a regular frequency from the first timestamps ({shown}); "
            f'set data.frequency, or data.steps = "rows" if the rows follow a calendar\'s days'
        )
    expected = expected_dates(alias, ts[0], len(ts))
    wrong = np.flatnonzero(expected != ts)
    if len(wrong) == 0:
        return alias
    if wrong[0] == 0:
        raise TimestampError(
            f"series {sid!r}: row {rows[0] + 1} ({ts[0]}) is not a date of frequency {alias} (the next "
            f"one is {expected[0]}); set data.frequency to the data's, or leave it out to infer it"
        )
    raise _irregular(sid, ts, rows, expected, int(wrong[0]), f"frequency {alias}")


def check_steps(sid: str, ts: pd.Index, rows: np.ndarray) -> None:
    """Integer step numbers must advance by one constant step (the commonest one)."""
    if len(ts) < 3:
        return
    sizes, counts = np.unique(np.diff(ts.to_numpy()), return_counts=True)
    step = int(sizes[np.argmax(counts)])  # a missing row shows as one longer step among many
    expected = pd.Index(ts[0] + step * np.arange(len(ts)))
    wrong = np.flatnonzero(expected != ts)
    if len(wrong):
        raise _irregular(sid, ts, rows, expected, int(wrong[0]), f"step {step}")


def stamp_bytes(ts: pd.Index) -> bytes:
    """The timestamps as bytes for a fingerprint, the same at any datetime resolution."""
    if isinstance(ts, pd.DatetimeIndex):
        try:
            return ts.as_unit("ns").asi8.tobytes()
        except pd.errors.OutOfBoundsDatetime:  # before 1677 or after 2262
            return b"us" + ts.as_unit("us").asi8.tobytes()
    return b"steps" + np.asarray(ts, dtype=np.int64).tobytes()
