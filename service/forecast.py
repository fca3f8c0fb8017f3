"""A validated forecast request -> one model input batch -> the JSON answer.

The numbers are checked here, not by pydantic: a type scan of the Python
objects and one ``np.array`` call for the whole batch (``fast_batch``) cost
microseconds where per-element validation costs milliseconds on a 256-series
batch. Only a request that fails the fast path is walked series by series
(``series_array``), to name every value at fault.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np

from service.bundle.manifest import Manifest
from service.errors import MAX_DETAILS, InvalidRequest
from service.schemas import ForecastRequest, SeriesIn
from service.timeindex import Frequency, format_timestamps, parse_frequency, parse_timestamp

_NUMBER_TYPES = frozenset({int, float})
_F32_MAX = float(np.finfo(np.float32).max)
_SMALL = 2048  # values up to which the fast path checks ranges in Python


class _Bad(Exception):
    """One problem in one series: a location below ``series[i]`` and a message."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


@dataclass
class Batch:
    """What the model needs, and what the answer needs to be dated."""

    x: np.ndarray  # float32 (batch, time, features), time = min(window, shortest history)
    horizon: int  # steps to return
    timestamps: list[list[str] | None]  # per series: times of the forecast steps, if known


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _cells(values: list[Any], nested: bool) -> Iterator[tuple[tuple[int, ...], Any]]:
    """(index, value) of every number slot, row-major: ``(i,)`` or ``(i, j)``."""
    if nested:
        for i, row in enumerate(values):
            for j, cell in enumerate(row):
                yield (i, j), cell
    else:
        for i, cell in enumerate(values):
            yield (i,), cell


def _first(values: list[Any], nested: bool, bad: Callable[[Any], bool]) -> tuple[tuple[int, ...], Any]:
    return next((where, v) for where, v in _cells(values, nested) if bad(v))


def numbers_array(data: list[Any]) -> np.ndarray:
    """Finite numbers nested in lists (any depth, row-major) as a flat float32 array; ValueError otherwise.

    Used for V2 tensor data, whose shape the request states separately.
    """
    if set(map(type, data)) <= _NUMBER_TYPES:
        try:
            arr = np.array(data, dtype=np.float64)
        except OverflowError:
            raise ValueError("a number is outside the float32 range") from None
        if not fits_float32(arr):
            raise ValueError("NaN, infinity or a number outside the float32 range")
        return arr.astype(np.float32)
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:  # iterative: orjson allows 1,024 levels, more than Python's recursion limit
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if type(item) not in _NUMBER_TYPES:
                raise ValueError(f"expected numbers, got {_describe(item)}")
            flat.append(item)
        else:
            stack.pop()
    return numbers_array(flat)


def series_array(values: list[Any], manifest: Manifest) -> np.ndarray:
    """``values`` as float32 ``(time, features)``; raises _Bad with the element at fault."""
    n_features = len(manifest.spec.features)
    kinds = set(map(type, values))
    nested = list in kinds
    if nested and kinds != {list}:
        raise _Bad(("values",), "mixes numbers and rows: send plain numbers or rows of numbers")
    if nested:
        kinds = set(map(type, chain.from_iterable(values)))
    if not kinds <= _NUMBER_TYPES:
        where, value = _first(values, nested, lambda v: type(v) not in _NUMBER_TYPES)
        raise _Bad(("values", *where), f"expected a number, got {_describe(value)}")
    try:
        arr = np.array(values, dtype=np.float64)  # float64 first: a float32 cast would hide overflow
    except ValueError:
        raise _Bad(("values",), "rows have different lengths") from None
    except OverflowError:  # an integer beyond float64 (only from the NaN-tolerant parser)
        where, _ = _first(values, nested, lambda v: abs(v) > _F32_MAX)
        raise _Bad(("values", *where), "outside the float32 range (about ±3.4e38)") from None
    if arr.ndim == 1:
        if n_features != 1:
            raise _Bad(
                ("values",),
                f"the model takes {n_features} features ({', '.join(manifest.spec.features)}): send rows of "
                f"{n_features} numbers, not plain numbers",
            )
        arr = arr[:, None]
    elif arr.shape[1] != n_features:
        raise _Bad(
            ("values",),
            f"rows have {arr.shape[1]} numbers, the model takes {n_features} features "
            f"({', '.join(manifest.spec.features)})",
        )
    if not fits_float32(arr):
        where, value = _first(values, nested, lambda v: not math.isfinite(v) or abs(v) > _F32_MAX)
        if math.isnan(value):
            raise _Bad(("values", *where), "NaN is not allowed: fill or drop missing values")
        if math.isinf(value):
            raise _Bad(("values", *where), "infinity is not allowed")
        raise _Bad(("values", *where), "outside the float32 range (about ±3.4e38)")
    if len(arr) < manifest.spec.input_window.min_length:
        raise _Bad(
            ("values",),
            f"{len(arr)} points, the model needs at least {manifest.spec.input_window.min_length}",
        )
    return arr[-manifest.spec.input_window.length :].astype(np.float32)


def fits_float32(arr: np.ndarray) -> bool:
    """No NaN, no inf, nothing a float32 cannot hold (NaN compares False)."""
    return bool((np.abs(arr) <= _F32_MAX).all())


def values_list_problems(values_by_series: Iterable[tuple[int, Any]]) -> list[dict[str, Any]]:
    """Error details for every ``series[i].values`` that is not a non-empty list.

    ``SeriesIn`` leaves ``values`` unvalidated (see there), so this is its type check.
    """
    details: list[dict[str, Any]] = []
    for i, values in values_by_series:
        if type(values) is not list:
            details.append({"loc": ["series", i, "values"], "msg": "Input should be a valid list"})
        elif not values:
            details.append({"loc": ["series", i, "values"], "msg": "empty: send at least one value"})
        if len(details) >= MAX_DETAILS:
            break
    return details


def raw_values(raw: Any) -> Iterator[tuple[int, Any]]:
    """``(i, series[i]["values"])`` of a parsed body that pydantic refused, where present."""
    series = raw.get("series") if isinstance(raw, dict) else None
    if isinstance(series, list):
        for i, item in enumerate(series):
            if isinstance(item, dict) and "values" in item:
                yield i, item["values"]


def check_values_lists(req: ForecastRequest) -> None:
    """422 unless every ``series[i].values`` is a non-empty list."""
    details = values_list_problems((i, s.values) for i, s in enumerate(req.series))
    if details:
        raise InvalidRequest.from_details(details)


def fast_batch(req: ForecastRequest, manifest: Manifest, bool_free: bool = False) -> np.ndarray | None:
    """float32 ``(batch, window, features)`` for the common case, with few numpy calls; else None.

    The common case: every series has the same number of points, at least a
    window, all plain finite numbers (rows of ``len(features)`` for covariate
    models). Anything else goes through ``series_array`` one series at a time,
    which finds and names each problem. Both paths check every value, not only
    the tail that the model sees.

    ``bool_free``: the request body has no ``true`` or ``false`` token at all.
    Then a large batch skips the Python type scan and converts in one C loop
    (``_converted_batch``), which refuses every non-number but a bool: a bool
    would become 1.0 or 0.0 unnoticed, which is why the caller must rule bools
    out from the bytes.
    """
    values = [s.values for s in req.series]
    lengths = set(map(len, values))
    window = manifest.spec.input_window.length
    if len(lengths) != 1 or lengths.pop() < window:
        return None
    n_features = len(manifest.spec.features)
    if n_features > 1:
        rows = list(chain.from_iterable(values))
        if set(map(type, rows)) != {list} or set(map(len, rows)) != {n_features}:
            return None
        if bool_free and len(rows) * n_features > _SMALL:
            return _converted_batch(chain.from_iterable(rows), len(values), len(values[0]), window)
        cells = list(chain.from_iterable(rows))
    else:
        if bool_free and len(values) * len(values[0]) > _SMALL:
            return _converted_batch(chain.from_iterable(values), len(values), len(values[0]), window)
        cells = values[0] if len(values) == 1 else list(chain.from_iterable(values))
    if not set(map(type, cells)) <= _NUMBER_TYPES:
        return None
    if len(cells) <= _SMALL:
        # Each numpy call costs microseconds of fixed overhead on a small request
        # (more once the model call has flushed the caches): check with one C loop,
        # then convert once, with no overflow left to warn about. The sum of the
        # magnitudes is NaN or inf if any value is, and bounds every value otherwise
        # (a float sum of non-negative terms never rounds below its largest term);
        # a large but legal batch merely takes the slow path.
        try:
            bound = sum(map(abs, cells))
            if not (math.isfinite(bound) and bound <= _F32_MAX):
                return None
        except OverflowError:  # integers beyond float64, only from the NaN-tolerant parser
            return None
        arr = np.array(values, dtype=np.float32)
    else:
        wide = np.array(values, dtype=np.float64)
        if not fits_float32(wide):
            return None
        arr = wide.astype(np.float32)
    # (batch, time) or (batch, time, features) -> (batch, window, features)
    return arr[:, -window:, None] if n_features == 1 else arr[:, -window:]


def _converted_batch(cells: Iterable[Any], batch: int, length: int, window: int) -> np.ndarray | None:
    """float32 ``(batch, window, features)`` from the ``batch * length * features`` cells of a
    rectangular, bool-free batch, or None.

    ``array("d")`` converts in one C loop and takes only ints and floats (and
    bools, which the caller has ruled out): a string, null, object or list
    raises TypeError, an int beyond float64 OverflowError. Memory stays at 8
    bytes a cell whatever the client sent, unlike dtype inference, which sizes a
    text array by the longest string.
    """
    try:
        flat = array("d", cells)
    except (TypeError, OverflowError):
        return None
    wide = np.frombuffer(flat, dtype=np.float64).reshape(batch, length, -1)
    if not fits_float32(wide):
        return None
    return wide[:, -window:].astype(np.float32)


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
        return parsed[-1][0], all(bare for _, bare in parsed)
    if series.start is not None:
        try:
            start, bare = parse_timestamp(series.start)
        except ValueError:
            raise _Bad(("start",), "not an ISO 8601 date or date-time") from None
        if freq is None:
            return None
        try:
            return freq.last_of(start, count), bare
        except (OverflowError, ValueError):
            raise _Bad(("start",), "the series would run past year 9999") from None
    return None


def _forecast_timestamps(
    series: SeriesIn, count: int, freq: Frequency | None, horizon: int
) -> list[str] | None:
    """ISO times of the forecast steps, or None when the series is undated or the frequency unknown."""
    last = _last_timestamp(series, count, freq)
    if last is None or freq is None:
        return None
    try:
        return format_timestamps(freq.after(last[0], horizon), last[1])
    except (OverflowError, ValueError):
        field = "timestamps" if series.timestamps is not None else "start"
        raise _Bad((field,), "the forecast would run past year 9999") from None


def check_options(req: ForecastRequest, manifest: Manifest) -> int:
    """The horizon to return; 422 for options the model cannot honour."""
    if req.levels is not None:
        reason = (
            "this model has no intervals" if manifest.intervals is None else "intervals are not served yet"
        )
        raise InvalidRequest.at(["levels"], f"{reason}; leave out levels")
    if req.horizon is not None and req.horizon > manifest.spec.horizon:
        raise InvalidRequest.at(
            ["horizon"], f"{req.horizon} steps asked, the model forecasts at most {manifest.spec.horizon}"
        )
    return req.horizon or manifest.spec.horizon


def prepare(req: ForecastRequest, manifest: Manifest, horizon: int, bool_free: bool = False) -> Batch:
    """Check every series against the model and stack them into one input batch.

    All problems are collected (up to a limit) so a client fixes them in one round.
    ``bool_free``: see ``fast_batch``.
    """
    check_values_lists(req)
    freq = parse_frequency(manifest.spec.frequency)
    x = fast_batch(req, manifest, bool_free)
    arrays: list[np.ndarray] = []
    stamps: list[list[str] | None] = []
    details: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, series in enumerate(req.series):
        try:
            if series.id is not None:
                if series.id in seen:
                    raise _Bad(("id",), f"duplicate of series[{seen[series.id]}].id")
                seen[series.id] = i
            if x is None:
                arrays.append(series_array(series.values, manifest))
            dated = series.start is not None or series.timestamps is not None
            if series.start is not None and series.timestamps is not None:
                raise _Bad(("start",), "give start or timestamps, not both")
            stamps.append(_forecast_timestamps(series, len(series.values), freq, horizon) if dated else None)
        except _Bad as bad:
            details.append({"loc": ["series", i, *bad.loc], "msg": bad.msg})
            if len(details) >= MAX_DETAILS:
                break
    if details:
        raise InvalidRequest.from_details(details)
    if x is None:
        # Histories are cut to the window, so lengths differ only for models whose
        # min_length is below the window: feed those the common, shortest tail.
        time = min(len(a) for a in arrays)
        x = np.stack([a[-time:] for a in arrays])
    return Batch(x=x, horizon=horizon, timestamps=stamps)


def answer(manifest: Manifest, req: ForecastRequest, batch: Batch, y: np.ndarray) -> dict[str, Any]:
    """The response body (shape of ``ForecastResponse``); numpy rows are left for orjson to write.

    ``y``: float32 (batch, model horizon, targets).
    """
    y = y[:, : batch.horizon]  # (batch, horizon, targets)
    rows = np.ascontiguousarray(y[..., 0] if y.shape[2] == 1 else y)  # orjson needs C order
    forecasts = []
    for i, series in enumerate(req.series):
        item: dict[str, Any] = {"id": series.id, "mean": rows[i]}
        if batch.timestamps[i] is not None:
            item["timestamps"] = batch.timestamps[i]
        forecasts.append(item)
    return {
        "model": manifest.name,
        "version": manifest.version,
        "horizon": batch.horizon,
        "targets": manifest.spec.targets,
        "forecasts": forecasts,
    }
