"""Inputs known in advance, on the serving side: a request's ``future`` values and the calendar of
its dates, put where the graph reads them (``ModelSpec.known``).

The graph's input rows are the history's own columns (what a client sends in
``values``), the calendar of the row's step, then every known input read
``horizon`` steps ahead of the row: for a window of ``length`` rows ending at
the last value, the known inputs of the steps ``horizon - length + 1 ..
horizon`` after it. The trainer cuts its windows the same way
(``training.windows.model_input``); the parity and serving tests hold the two
together.
"""

from __future__ import annotations

import functools
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np

from service.bundle import calendar
from service.bundle.manifest import ModelSpec
from service.bundle.timeindex import Frequency
from service.values import NUMBER_TYPES, BadValues, as_float32, describe, numbers_array


class BadFuture(Exception):
    """One problem with one series' known inputs: a location below ``series[i]`` and a message."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def needed(spec: ModelSpec, horizon: int) -> int:
    """How many future values a request for ``horizon`` steps sends per known column: that many
    when each forecast step reads the known inputs up to its own (``ModelSpec.causal``), else
    the model's whole horizon (every step reads all of them)."""
    return horizon if spec.causal else spec.horizon


def future_rows(future: Any, spec: ModelSpec, horizon: int) -> np.ndarray:
    """One series' ``future`` (column -> numbers) as float32 ``(spec.horizon, columns)``; steps past
    the request's ``horizon`` repeat the last value sent (a causal model never reads them)."""
    names = [] if spec.known is None else spec.known.future
    if not names:
        if future is not None:
            raise BadFuture(("future",), "this model reads no future inputs: leave future out")
        return np.empty((spec.horizon, 0), np.float32)
    count = needed(spec, horizon)
    wanted = f"{count} values each of {', '.join(names)}"
    if future is None:
        raise BadFuture(("future",), f"required: the model reads {wanted}, one per forecast step")
    if type(future) is not dict:
        raise BadFuture(("future",), f"expected an object of {wanted}, got {describe(future)}")
    unknown = [k for k in future if k not in names]
    if unknown:
        raise BadFuture(
            ("future", unknown[0]), f"not a future input of this model (it reads {', '.join(names)})"
        )
    missing = [k for k in names if k not in future]
    if missing:
        raise BadFuture(("future",), f"missing {', '.join(missing)}: the model reads {wanted}")
    columns = []
    for name in names:
        values = future[name]
        if type(values) is not list:
            raise BadFuture(("future", name), f"expected a list of {count} numbers, got {describe(values)}")
        if len(values) != count:
            why = (
                "one per forecast step" if spec.causal else "every step the model forecasts, whatever horizon"
            )
            raise BadFuture(("future", name), f"{len(values)} values, the model needs {count} ({why})")
        if any(type(v) is list for v in values):
            raise BadFuture(("future", name), "expected plain numbers, got a list")
        try:
            columns.append(numbers_array(values))
        except (ValueError, BadValues) as exc:
            raise BadFuture(("future", name), f"{exc}: send finite numbers only") from None
    rows = np.stack(columns, axis=1)
    if count < spec.horizon:
        rows = np.concatenate([rows, np.repeat(rows[-1:], spec.horizon - count, axis=0)])
    return rows


def future_batch(futures: list[Any], spec: ModelSpec, horizon: int) -> np.ndarray | None:
    """Every series' ``future`` as float32 ``(batch, spec.horizon, columns)`` in the common case
    (each an object of exactly the model's columns in its order, each a list of the right count of
    plain numbers, all finite), in one ``np.array`` call for the batch; None for anything else,
    which ``future_rows`` then decides series by series and names the fault. It only accepts:
    whenever it answers, ``future_rows`` would have accepted every series and given the same rows
    (tests/test_known_inputs.py holds it to that). At 256 series it takes a fraction of checking
    them one by one (service/known.py's comparison in docs/benchmarks.md)."""
    names = [] if spec.known is None else spec.known.future
    count = needed(spec, horizon)
    if not names or any(type(f) is not dict or list(f) != names for f in futures):
        return None
    cells = [f[name] for f in futures for name in names]
    if any(type(c) is not list or len(c) != count for c in cells):
        return None
    if not set(map(type, chain.from_iterable(cells))) <= NUMBER_TYPES:
        return None
    try:
        arr = as_float32(cells)  # (batch * columns, count)
    except OverflowError:
        return None
    if arr is None:
        return None
    rows = arr.reshape(len(futures), len(names), count).transpose(0, 2, 1)
    if count < spec.horizon:
        rows = np.concatenate([rows, np.repeat(rows[:, -1:], spec.horizon - count, axis=1)], axis=1)
    return np.ascontiguousarray(rows)


def calendar_rows(spec: ModelSpec, freq: Frequency, last: datetime) -> np.ndarray:
    """float32 ``(length + horizon, columns)``: the calendar of the window's ``length`` steps
    ending at ``last`` and of the ``horizon`` steps after it."""
    assert spec.known is not None
    known, window = spec.known, spec.input_window.length
    return _calendar(tuple(known.calendar), known.holidays, freq, last, window, spec.horizon)


# The calendar rows of one series depend on its last timestamp alone: a batch of series sent
# for the same day computes them once.
@functools.lru_cache(maxsize=256)
def _calendar(
    names: tuple[str, ...], country: str | None, freq: Frequency, last: datetime, length: int, horizon: int
) -> np.ndarray:
    stamps = [freq.step(last, k) for k in range(1 - length, horizon + 1)]
    rows = calendar.features(stamps, names, country)
    rows.flags.writeable = False  # shared between requests
    return rows


def model_input(x: np.ndarray, future: np.ndarray, days: np.ndarray | None, spec: ModelSpec) -> np.ndarray:
    """The graph's input for a batch: ``x`` ``(batch, length, sent)`` the histories cut to the
    window, ``future`` ``(batch, horizon, future columns)`` (``future_rows``), ``days``
    ``(batch, length + horizon, calendar columns)`` (``calendar_rows``; None without a calendar)
    -> float32 ``(batch, length, features)``: the sent columns and the calendar of each row, then
    the future columns and the calendar ``horizon`` rows ahead (``ModelSpec.lead``)."""
    assert spec.known is not None
    (batch, length, sent), horizon = x.shape, spec.horizon
    n_future, n_days = len(spec.known.future), 0 if days is None else days.shape[2]
    out = np.empty((batch, length, len(spec.features)), dtype=np.float32)
    out[:, :, :sent] = x
    col = sent
    if days is not None:
        out[:, :, col : col + n_days] = days[:, :length]
        col += n_days
    if n_future:
        # the known column's own past, then its future values: each row reads `horizon` ahead
        start = sent - n_future
        keep = length - horizon  # rows whose value ahead is still in the history
        out[:, :keep, col : col + n_future] = x[:, horizon:, start:sent]
        out[:, keep:, col : col + n_future] = future
        col += n_future
    if days is not None:
        out[:, :, col : col + n_days] = days[:, horizon:]
    return out
