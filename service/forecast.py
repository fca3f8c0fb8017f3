"""One forecast request, top to bottom: the envelope, the options, the model input, the answer.

``parse_request`` validates the envelope with pydantic, ``check_options`` the
horizon and levels against the model, ``prepare`` turns the series into one
model input batch (the numbers through ``service.values``, the dates here),
and ``answer`` builds the ``ForecastResponse``. Each step raises a 422 naming
the fields at fault; ``parse_request`` and ``prepare`` report every bad series
at once, so a client fixes them in one round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from service import known, values
from service.bundle import intervals
from service.bundle.manifest import Intervals, Manifest, ModelSpec
from service.bundle.predictor import Predictor, predict_with_bounds
from service.bundle.timeindex import Frequency, forecast_stamps, parse_frequency, parse_timestamp
from service.errors import InvalidRequest, validation_details
from service.schemas import ForecastRequest, SeriesIn


class _Bad(Exception):
    """One problem in one series, outside its values: a location below ``series[i]`` and a message."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


@dataclass
class Batch:
    """What the model needs, and what the answer needs to be dated."""

    # float32 (batch, time, features), time = min(window, history); a list of each series'
    # (time, features) when their lengths differ (a generative model's short contexts)
    x: np.ndarray | list[np.ndarray]
    horizon: int  # steps to return
    timestamps: list[list[str] | None]  # per series: times of the forecast steps, if known

    @cached_property
    def groups(self) -> list[tuple[np.ndarray | slice, np.ndarray]]:
        """``(rows, x)`` per history length: the whole batch at once in the common case; stacked
        once, for the model run and the intervals alike."""
        if isinstance(self.x, np.ndarray):
            return [(slice(None), self.x)]
        lengths = np.fromiter((len(a) for a in self.x), dtype=np.int64, count=len(self.x))
        return [
            (rows, np.stack([self.x[i] for i in rows]))
            for rows in (np.flatnonzero(lengths == n) for n in np.unique(lengths))
        ]

    def __len__(self) -> int:
        return len(self.x)


def predict(predictor: Predictor, batch: Batch, bounds: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``predict_with_bounds`` over the batch: one model call, or one per history length."""
    if isinstance(batch.x, np.ndarray):
        return predict_with_bounds(predictor, batch.x, bounds)
    n = len(batch)
    y: np.ndarray | None = None
    learned: np.ndarray | None = None
    for rows, x in batch.groups:
        part, part_learned = predict_with_bounds(predictor, x, bounds)
        if y is None:
            y = np.empty((n, *part.shape[1:]), part.dtype)
            if part_learned is not None:
                learned = np.empty((*part_learned.shape[:2], n, *part_learned.shape[3:]), part_learned.dtype)
        y[rows] = part
        if learned is not None and part_learned is not None:
            learned[:, :, rows] = part_learned
    assert y is not None  # a batch has at least one series
    return y, learned


def _in_series_order(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Details sorted by series (stable: a series' own problems keep their order), others first."""

    def series_index(detail: dict[str, Any]) -> int:
        loc = detail["loc"]
        return loc[1] if len(loc) > 1 and loc[0] == "series" and isinstance(loc[1], int) else -1

    return sorted(details, key=series_index)


def parse_request(raw: Any, spec: ModelSpec, max_series: int) -> ForecastRequest:
    """The parsed body as a ``ForecastRequest``; 422 with every problem of the envelope and the values."""
    series = raw.get("series") if isinstance(raw, dict) else None
    series = series if isinstance(series, list) else []
    if len(series) > max_series:
        # Refuse before pydantic builds (say) 500,000 tiny series only to count them.
        raise InvalidRequest.at(["series"], f"{len(series)} series, at most {max_series} per request")
    try:
        return ForecastRequest.model_validate(raw)
    except ValidationError as exc:
        # pydantic leaves the values to service.values (see SeriesIn): check those present too.
        present = [(i, s["values"]) for i, s in enumerate(series) if isinstance(s, dict) and "values" in s]
        _, value_details = values.check_all(present, spec)
        raise InvalidRequest.from_details(_in_series_order(validation_details(exc) + value_details)) from None


def check_options(req: ForecastRequest, manifest: Manifest) -> int:
    """The horizon to return; 422 for options the model cannot honour."""
    if req.levels is not None:
        _check_levels(req.levels, manifest)
    if req.horizon is not None and req.horizon > manifest.spec.horizon:
        raise InvalidRequest.at(
            ["horizon"], f"{req.horizon} steps asked, the model forecasts at most {manifest.spec.horizon}"
        )
    return req.horizon or manifest.spec.horizon


def _check_levels(levels: list[float], manifest: Manifest) -> None:
    """422 naming each level the calibration cannot serve (or that repeats another)."""
    if manifest.intervals is None:
        raise InvalidRequest.at(
            ["levels"], "this model has no interval calibration (trained before intervals); leave out levels"
        )
    cal = manifest.intervals
    top = cal.max_level
    keys = [intervals.level_key(level) for level in levels]
    unlearned = set(intervals.learned_only(cal, levels))  # a quantile head serves its own levels only
    if not unlearned and max(levels) <= top and len(set(keys)) == len(keys):
        return
    support = (
        f"its {cal.errors} calibration errors ({cal.windows} windows x {manifest.spec.horizon} steps) support"
    )
    details, seen = [], set()
    for i, (level, key) in enumerate(zip(levels, keys, strict=True)):
        if i in unlearned:
            learned = intervals.learned_levels(cal)
            msg = f"{key}: this model learned the levels {learned} (network.quantiles): ask those"
            details.append({"loc": ["levels", i], "msg": msg})
        elif level > top:
            msg = f"{key} is above {top:g}, the highest level {support}"
            details.append({"loc": ["levels", i], "msg": msg})
        elif key in seen:
            details.append({"loc": ["levels", i], "msg": f"{key} is asked twice"})
        seen.add(key)
    raise InvalidRequest.from_details(details)


def prepare(req: ForecastRequest, manifest: Manifest, horizon: int) -> Batch:
    """Check every series against the model and stack them into one input batch; 422 naming every
    problem (up to a limit)."""
    spec = manifest.spec
    x, details = values.batch([s.values for s in req.series], spec)
    faulty = {d["loc"][1] for d in details}  # series whose values cannot be dated
    freq = parse_frequency(spec.frequency)
    reads_calendar = spec.known is not None and bool(spec.known.calendar)
    stamps: list[list[str] | None] = []
    # the common case at once; otherwise each series' future below, with its faults named
    future = None if spec.known is None else known.future_batch([s.future for s in req.series], spec, horizon)
    futures: list[np.ndarray] = []
    days: list[np.ndarray] = []
    seen: dict[str, int] = {}
    for i, series in enumerate(req.series):
        try:
            if series.id is not None:
                if series.id in seen:
                    raise _Bad(("id",), f"duplicate of series[{seen[series.id]}].id")
                seen[series.id] = i
            if series.start is not None and series.timestamps is not None:
                raise _Bad(("start",), "give start or timestamps, not both")
            dated = (series.start is not None or series.timestamps is not None) and i not in faulty
            last = _last_timestamp(series, len(series.values), freq) if dated else None
            stamps.append(_forecast_timestamps(last, freq, horizon, series))
            if spec.known is not None:
                if future is None:
                    futures.append(known.future_rows(series.future, spec, horizon))
                if reads_calendar and i not in faulty:
                    if last is None or freq is None:
                        raise _Bad(("start",), _UNDATED.format(", ".join(spec.known.calendar)))
                    days.append(known.calendar_rows(spec, freq, last[0]))
            elif series.future is not None:
                raise _Bad(("future",), "this model reads no future inputs: leave future out")
        except (_Bad, known.BadFuture) as bad:
            details.append({"loc": ["series", i, *bad.loc], "msg": bad.msg})
    if details or x is None:
        raise InvalidRequest.from_details(_in_series_order(details))
    if spec.known is not None:
        assert isinstance(x, np.ndarray)  # a model with known inputs reads its whole window
        future = future if future is not None else np.stack(futures)
        x = known.model_input(x, future, np.stack(days) if reads_calendar else None, spec)
    return Batch(x=x, horizon=horizon, timestamps=stamps)


_UNDATED = (
    "required: the model reads the calendar of the forecast steps ({}); date the series with start "
    "or timestamps"
)


def answer(
    manifest: Manifest, req: ForecastRequest, batch: Batch, y: np.ndarray, learned: np.ndarray | None = None
) -> bytes:
    """The JSON body of the ``ForecastResponse`` for the model's output ``y``: float32 (batch, model
    horizon, targets); ``learned``: a quantile head's bounds, float32 (2, levels, batch, model
    horizon, targets).

    Built as dicts around the numpy rows and written by orjson in one pass, every float32 in its
    shortest form (``112.3``), the fields in the model's order and the unset ones left out: the
    same bytes as ``ForecastResponse.model_dump_json(exclude_unset=True)`` of the same answer
    (tests/test_intervals.py compares them), which is what the OpenAPI document describes.
    Through the model, a 256-series answer with two levels took 2.7 ms to validate and write,
    most of it pydantic writing 15,000 floats one by one; this way about 1 ms.

    422 for a series whose forecast is NaN or infinite (values far beyond what
    the model was trained on can overflow inside the graph): no number to send.
    """
    y = y[:, : batch.horizon]  # (batch, horizon, targets)
    cal = manifest.intervals  # check_options refused levels for a model without one
    both = None  # (2, levels, batch, h, targets): lower and upper bounds, when levels are asked
    keys: list[str] = []  # their names in the answer, "80", "97.5"
    if req.levels and cal is not None:
        # a panel's series named by their training id get their own widths
        factors = intervals.series_factors(cal, [series.id for series in req.series]) if cal.series else None
        both = _bounds(cal, batch, y, req.levels, learned, factors)
        keys = [intervals.level_key(level) for level in req.levels]
    # whole arrays first: one call each, and which series failed only when one did
    if not (np.isfinite(y).all() and (both is None or np.isfinite(both).all())):
        bad = ~np.isfinite(y).all(axis=(1, 2))
        if both is not None:
            bad |= ~np.isfinite(both).all(axis=(0, 1, 3, 4))
        msg = "the model's forecast for these values is not finite: are they on the scale it was trained on?"
        raise InvalidRequest.from_details(
            [{"loc": ["series", int(i), "values"], "msg": msg} for i in np.flatnonzero(bad)]
        )
    # per series: numbers, or rows of targets (orjson writes C-contiguous arrays only)
    single = y.shape[2] == 1
    means = np.ascontiguousarray(y[..., 0] if single else y)
    forecasts: list[dict[str, Any]] = []
    for i, (series, stamps) in enumerate(zip(req.series, batch.timestamps, strict=True)):
        forecast: dict[str, Any] = {"id": series.id, "mean": means[i]}
        if stamps is not None:  # left out otherwise, as an unset field
            forecast["timestamps"] = stamps
        forecasts.append(forecast)
    if both is not None:
        sides = np.ascontiguousarray(both[..., 0] if single else both)
        for i, forecast in enumerate(forecasts):
            forecast["intervals"] = {
                k: {"lower": sides[0, n, i], "upper": sides[1, n, i]} for n, k in enumerate(keys)
            }
    fields = {
        "model": manifest.name,
        "version": manifest.version,
        "horizon": batch.horizon,
        "targets": manifest.spec.targets,
        "forecasts": forecasts,
    }
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY)


def _bounds(
    cal: Intervals,
    batch: Batch,
    y: np.ndarray,
    levels: list[float],
    learned: np.ndarray | None,
    factors: np.ndarray | None,
) -> np.ndarray:
    """``intervals.both_bounds`` of the batch, per history length when they differ (each width
    scales with its own window's spread)."""
    if isinstance(batch.x, np.ndarray):
        return intervals.both_bounds(cal, batch.x, y, levels, learned, factors)
    both = np.empty((2, len(levels), *y.shape), np.float32)
    for rows, x in batch.groups:
        both[:, :, rows] = intervals.both_bounds(
            cal,
            x,
            y[rows],
            levels,
            None if learned is None else learned[:, :, rows],
            None if factors is None else factors[rows],
        )
    return both


def _last_timestamp(series: SeriesIn, count: int, freq: Frequency | None) -> tuple[datetime, bool] | None:
    """Time of the last value and whether the client sent bare dates.

    None if the series is undated, or dated by ``start`` for a model without a
    frequency (nothing places its last value then).
    """
    if series.timestamps is not None:
        if len(series.timestamps) != count:
            raise _Bad(("timestamps",), f"{len(series.timestamps)} timestamps for {count} values")
        parsed = []
        for i, text in enumerate(series.timestamps):
            try:
                parsed.append(parse_timestamp(text))
            except ValueError:
                raise _Bad(("timestamps", i), "not an ISO 8601 date or date-time") from None
        try:
            increasing = all(a[0] < b[0] for a, b in zip(parsed, parsed[1:], strict=False))
        except TypeError:
            raise _Bad(("timestamps",), "mixes times with and without a UTC offset") from None
        if not increasing:
            raise _Bad(("timestamps",), "must be strictly increasing")
        if freq is not None:
            _check_regular([t for t, _ in parsed], freq)
        return parsed[-1][0], all(bare for _, bare in parsed)
    if series.start is not None:
        try:
            start, bare = parse_timestamp(series.start)
        except ValueError:
            raise _Bad(("start",), "not an ISO 8601 date or date-time") from None
        if freq is None:
            return None
        if not freq.on_offset(start):
            raise _Bad(("start",), _off_offset(start, freq))
        try:
            return freq.last_of(start, count), bare
        except (OverflowError, ValueError):
            raise _Bad(("start",), "the series would run past year 9999") from None
    return None


def _off_offset(t: datetime, freq: Frequency) -> str:
    after = freq.after(t, 1)[0].isoformat()
    return f"{t.isoformat()} is not on the model's frequency {freq.alias} (the next date on it: {after})"


def _check_regular(stamps: list[datetime], freq: Frequency) -> None:
    """Timestamps one step of the model's frequency apart, the first on its offset: else the
    forecast's dates (and what the model reads as one step) would be silently wrong."""
    if not freq.on_offset(stamps[0]):
        raise _Bad(("timestamps", 0), _off_offset(stamps[0], freq))
    for i in range(1, len(stamps)):
        try:
            expected = freq.following(stamps[i - 1])
        except (OverflowError, ValueError):
            raise _Bad(("timestamps", i), "past year 9999") from None
        got = stamps[i]
        same = (
            got.replace(tzinfo=None) == expected.replace(tzinfo=None) if freq.wall_clock else got == expected
        )
        if not same:
            raise _Bad(
                ("timestamps", i),
                f"{got.isoformat()} is not one step ({freq.alias}) after {stamps[i - 1].isoformat()}: "
                f"expected {expected.isoformat()} (a missing, extra or shifted step)",
            )


def _forecast_timestamps(
    last: tuple[datetime, bool] | None, freq: Frequency | None, horizon: int, series: SeriesIn
) -> list[str] | None:
    """ISO times of the forecast steps after the ``last`` (``_last_timestamp``), or None when the
    series is undated or the frequency unknown."""
    if last is None or freq is None:
        return None
    try:
        return list(forecast_stamps(freq, last[0], horizon, last[1]))
    except (OverflowError, ValueError):
        field = "timestamps" if series.timestamps is not None else "start"
        raise _Bad((field,), "the forecast would run past year 9999") from None
