"""Calendar features of timestamps: the one definition training and serving share.

A model trained with ``data.calendar`` reads, for every step it forecasts, the
calendar of that step (known in advance for any date): the trainer computes
the columns from the data's timestamps, the service from the request's dates,
both here, on ``datetime`` alone (the service has no pandas).

Each periodic feature is a pair of columns, the sine and cosine of its phase
(darts' cyclic encoding): two neighbouring values (December and January,
Sunday and Monday) stay neighbours, and any run of them (the weekend) is
separable by one line. ``holiday`` is 1 on a public holiday of the
configured country (the ``holidays`` package), else 0.

Timestamps are read as wall-clock time: a date-time with a UTC offset is
placed by its own local date and hour, as the data file wrote it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from service.bundle.timeindex import Frequency

# feature -> period of its phase; holiday is a flag, not periodic
PERIODS = {"hour": 24.0, "dayofweek": 7.0, "weekofyear": 52.0, "month": 12.0}
FEATURES = (*PERIODS, "holiday")


def auto_features(freq: Frequency, holidays: str | None) -> list[str]:
    """The features ``data.calendar = "auto"`` picks for data at ``freq``: those that change from
    one step to the next (monthly data has no day of week, daily data no hour), and the holiday
    flag for daily and finer data when a country is set."""
    if freq.period:  # months, quarters, years
        names = ["month"] if freq.period * freq.n < 12 else []
    elif freq.tick is not None and freq.tick < timedelta(days=1):
        names = ["hour", "dayofweek"]
    elif freq.tick is not None and freq.tick >= timedelta(days=7) or freq.weekday is not None:
        names = ["weekofyear"]
    else:  # daily, business days
        names = ["dayofweek", "weekofyear"]
    daily = not freq.period and freq.weekday is None and (freq.tick is None or freq.tick <= timedelta(days=1))
    return names + (["holiday"] if holidays is not None and daily else [])


def columns(features: Sequence[str]) -> list[str]:
    """Column names of ``features``, in order: ``hour_sin, hour_cos, ..., holiday``."""
    out: list[str] = []
    for name in features:
        out.extend([f"{name}_sin", f"{name}_cos"] if name in PERIODS else [name])
    return out


@functools.lru_cache(maxsize=16)
def _holidays(country: str) -> object:
    """The ``holidays`` calendar of ``country`` ("AU", or a region: "AU-VIC"), years filled lazily."""
    import holidays  # only models with a holiday feature need it

    code, _, subdiv = country.partition("-")
    return holidays.country_holidays(code, subdiv=subdiv or None)


def check_country(country: str) -> None:
    """ValueError naming the code when ``holidays`` does not know the country or region."""
    try:
        _holidays(country)
    except (NotImplementedError, KeyError) as exc:
        raise ValueError(f"holidays does not know the country or region {country!r}: {exc}") from None


def _phase(name: str, t: datetime) -> float:
    if name == "hour":
        return t.hour + t.minute / 60 + t.second / 3600
    if name == "dayofweek":
        return t.weekday()  # Monday 0
    if name == "weekofyear":
        return t.isocalendar().week - 1  # ISO weeks 1..53; week 53 wraps near week 1
    return t.month - 1


def features(stamps: Sequence[datetime], names: Sequence[str], country: str | None) -> np.ndarray:
    """float32 ``(len(stamps), len(columns(names)))``: the calendar of each timestamp."""
    out = np.empty((len(stamps), len(columns(names))), dtype=np.float32)
    j = 0
    for name in names:
        if name == "holiday":
            if country is None:
                raise ValueError("the holiday feature needs a country (data.holidays)")
            days = _holidays(country)
            out[:, j] = [t.date() in days for t in stamps]  # type: ignore[operator]
            j += 1
            continue
        angle = np.array([_phase(name, t) for t in stamps], dtype=np.float64) * (2 * math.pi / PERIODS[name])
        out[:, j], out[:, j + 1] = np.sin(angle), np.cos(angle)
        j += 2
    return out
