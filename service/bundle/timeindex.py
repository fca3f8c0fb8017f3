"""Timestamps of forecast steps from a pandas frequency alias, without pandas.

pandas is not in the ``serve`` install, so the common aliases the trainer infers
are re-implemented here on ``datetime``; they follow ``pandas.date_range``: the
steps after a timestamp are the next dates *on* the offset (``MS`` after
1960-12-15 is 1961-01-01), and time of day is kept.

Known: fixed steps ``D h H min T s S ms L us U`` (with a multiplier: ``30min``,
``2h``); ``B`` (business days); ``W`` / ``W-MON``...; month, quarter and year
starts and ends ``MS ME M QS Q QE YS AS YE Y A`` with an optional multiplier and
anchor month (``QS-OCT``, ``YE-DEC``). Anything else (``SMS``, ``BMS``, custom
business calendars) is unknown: the service then omits forecast timestamps.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

_TICKS = {
    "D": timedelta(days=1),
    "h": timedelta(hours=1),
    "H": timedelta(hours=1),
    "min": timedelta(minutes=1),
    "T": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "S": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
    "L": timedelta(milliseconds=1),
    "us": timedelta(microseconds=1),
    "U": timedelta(microseconds=1),
}
# base alias -> (months per period, is period start, default anchor month)
_CALENDAR = {
    "MS": (1, True, 1),
    "ME": (1, False, 12),
    "M": (1, False, 12),
    "QS": (3, True, 1),
    "QE": (3, False, 12),
    "Q": (3, False, 12),
    "YS": (12, True, 1),
    "AS": (12, True, 1),
    "YE": (12, False, 12),
    "Y": (12, False, 12),
    "A": (12, False, 12),
}
_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name.upper(): i for i, name in enumerate(calendar.day_abbr)}  # MON=0 .. SUN=6
_ALIAS = re.compile(r"^(\d*)([A-Za-z]+)(?:-([A-Za-z]{3}))?$")


@dataclass(frozen=True)
class Frequency:
    """A step between timestamps: fixed (``tick``), business days, weekly or calendar months.

    ``n`` base periods make one step (``2MS``: every other month start); a date
    is *on* the offset whatever ``n`` is, as in pandas.
    """

    alias: str
    n: int
    tick: timedelta | None = None
    business: bool = False
    weekday: int | None = None  # weekly, anchored on this weekday (0 = Monday)
    period: int = 0  # calendar: months in one base period (1, 3 or 12); 0 otherwise
    start: bool = True  # calendar: the first (True) or the last day of a period's month
    phase: int = 0  # calendar: anchor months are those with (month - 1) % period == phase

    def on_offset(self, t: datetime) -> bool:
        if self.business:
            return t.weekday() < 5
        if self.weekday is not None:
            return t.weekday() == self.weekday
        if self.period:
            day = 1 if self.start else calendar.monthrange(t.year, t.month)[1]
            return t.day == day and (t.month - 1) % self.period == self.phase
        return True

    def _next_anchor(self, t: datetime) -> datetime:
        """The first on-offset timestamp strictly after ``t``."""
        if self.business:
            return self._business(t, 1)
        if self.weekday is not None:
            return t + timedelta(days=(self.weekday - t.weekday() - 1) % 7 + 1)
        month = t.year * 12 + t.month - 1  # months since year 0
        for k in range(13):
            candidate = _month_anchor(t, month + k, self.start)
            if candidate > t and (candidate.month - 1) % self.period == self.phase:
                return candidate
        raise AssertionError("unreachable: every 12 months hold an anchor")

    def _business(self, t: datetime, days: int) -> datetime:
        """``days`` business days after ``t`` (a weekday or a weekend date), time of day kept."""
        moved = np.busday_offset(np.datetime64(t.date(), "D"), days, roll="backward")
        return datetime.combine(moved.astype(date), t.timetz())

    def _step(self, t: datetime, k: int) -> datetime:
        """``k`` steps of ``n`` base periods from ``t`` (on the offset), in constant time."""
        if self.tick is not None:
            return t + self.tick * k
        if self.period:
            return _month_anchor(t, t.year * 12 + t.month - 1 + k * self.n * self.period, self.start)
        if self.weekday is not None:
            return t + timedelta(days=7 * self.n * k)
        return self._business(t, self.n * k)

    def step(self, t: datetime, k: int) -> datetime:
        """The timestamp ``k`` steps after ``t`` (before it for a negative ``k``); ``t`` on the offset."""
        return self._step(t, k)

    def following(self, t: datetime) -> datetime:
        """The timestamp one step after ``t``, which must be on the offset."""
        return self._step(t, 1)

    @property
    def wall_clock(self) -> bool:
        """Whether steps are compared as local dates and times (a day or longer: a daylight-saving
        change of a timestamp's UTC offset does not move a daily or monthly step), not as instants."""
        return self.tick is None or self.tick >= timedelta(days=1)

    def _first(self, t: datetime) -> datetime:
        return t if self.on_offset(t) else self._next_anchor(t)

    def after(self, t: datetime, steps: int) -> list[datetime]:
        """The ``steps`` on-offset timestamps that follow ``t``.

        Like ``pandas.date_range(t, periods=steps + 1, freq)[1:]`` when ``t`` is
        on the offset; otherwise the first one is the next date on the offset.
        Raises OverflowError or ValueError past year 9999.
        """
        first = self._first(t)
        if first == t:
            return [self._step(t, k) for k in range(1, steps + 1)]
        return [first] + [self._step(first, k) for k in range(1, steps)]

    def last_of(self, start: datetime, count: int) -> datetime:
        """Timestamp of the ``count``-th point of a series whose first point is at ``start``."""
        return self._step(self._first(start), count - 1)


def _month_anchor(t: datetime, index: int, start: bool) -> datetime:
    """``t`` moved to the first or last day of month ``index`` (months since year 0), time kept."""
    year, month0 = divmod(index, 12)
    day = 1 if start else calendar.monthrange(year, month0 + 1)[1]
    return t.replace(year=year, month=month0 + 1, day=day)


@functools.lru_cache(maxsize=64)  # called per request with the manifest's alias
def parse_frequency(alias: str | None) -> Frequency | None:
    """A Frequency for a pandas alias, or None if it is missing or not one of the known ones."""
    if not alias:
        return None
    match = _ALIAS.match(alias.strip())
    if not match:
        return None
    digits, base, anchor = match.groups()
    n = int(digits) if digits else 1
    if n < 1:
        return None
    anchor = anchor.upper() if anchor else None
    if base in _TICKS and anchor is None:
        return Frequency(alias, n, tick=_TICKS[base] * n)
    if base == "B" and anchor is None:
        return Frequency(alias, n, business=True)
    if base == "W":
        if anchor is not None and anchor not in _DAYS:
            return None
        return Frequency(alias, n, weekday=_DAYS[anchor or "SUN"])
    if base in _CALENDAR:
        period, start, default = _CALENDAR[base]
        if anchor is not None and (period == 1 or anchor not in _MONTHS):
            return None
        month = _MONTHS[anchor] if anchor else default
        return Frequency(alias, n, period=period, start=start, phase=(month - 1) % period)
    return None


@functools.lru_cache(maxsize=1024)  # a batch's series are mostly sent with the same dates
def parse_timestamp(text: str) -> tuple[datetime, bool]:
    """An ISO 8601 timestamp and whether it was a bare date (answers are then dates too)."""
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time()), True
    except ValueError:
        return datetime.fromisoformat(text), False


def format_timestamps(stamps: list[datetime], date_only: bool) -> list[str]:
    if date_only and all(t.hour == t.minute == t.second == t.microsecond == 0 for t in stamps):
        return [t.date().isoformat() for t in stamps]
    return [t.isoformat() for t in stamps]


@functools.lru_cache(maxsize=1024)
def forecast_stamps(freq: Frequency, last: datetime, steps: int, date_only: bool) -> tuple[str, ...]:
    """The ISO times of the ``steps`` after ``last`` (``Frequency.after``, ``format_timestamps``):
    the same for every series of a batch that ends at the same time, so computed once."""
    return tuple(format_timestamps(freq.after(last, steps), date_only))
