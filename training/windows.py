"""Chronological split and window cutting.

Each series of length ``n`` is split by time into
``train = [0, n - val - test)``, ``val = [n - val - test, n - test)`` and
``test = [n - test, n)``. A window is ``length`` input steps followed by
``horizon`` target steps; it belongs to the split that holds its *targets*,
and its inputs may reach back into earlier splits (that is the history a
forecaster really has). So no validation or test target ever enters a
training window, and every fitted statistic comes from ``train`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import SplitConfig, WindowConfig
from training.data import DataError, Dataset

SPLITS = ("train", "val", "test")


@dataclass
class Windows:
    """Windows of one split.

    x: ``(n, length, features)`` raw inputs, targets first.
    y: ``(n, horizon, targets)`` raw targets.
    series: ``(n,)`` index of the series each window comes from.
    origin: ``(n,)`` position in its series of the first forecast step.
    """

    x: np.ndarray
    y: np.ndarray
    series: np.ndarray
    origin: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def sizes(split: SplitConfig, window: WindowConfig) -> tuple[int, int, int]:
    """``(val, test, length)`` of a resolved config (``training.recipe.resolve`` fills them in)."""
    if split.val is None or split.test is None or window.length is None:
        raise ValueError("split.val, split.test and window.length are resolved from the data first")
    return split.val, split.test, window.length


def bounds(n: int, split: SplitConfig) -> tuple[int, int]:
    """``(train_end, val_end)`` positions for a series of length ``n``."""
    if split.val is None or split.test is None:
        raise ValueError("split.val and split.test are resolved from the data first")
    return n - split.val - split.test, n - split.test


def smallest_before_test(ds: Dataset, split: SplitConfig) -> float:
    """The smallest target value of any series before the test split (what training saw)."""
    nt = len(ds.targets)
    return min(float(s.values[: bounds(len(s.values), split)[1], :nt].min()) for s in ds.series)


def check_lengths(ds: Dataset, split: SplitConfig, window: WindowConfig) -> None:
    """Reject a configuration or series that leaves a split without windows."""
    val, test, length = sizes(split, window)
    for name, size in (("split.val", val), ("split.test", test)):
        if size < window.horizon:
            raise DataError(f"{name}={size} is shorter than window.horizon={window.horizon}")
    need = length + window.horizon + val + test
    short = [(s.id, len(s.values)) for s in ds.series if len(s.values) < need]
    if short:
        shown = ", ".join(f"{sid!r} has {n}" for sid, n in short[:5])
        raise DataError(
            f"{len(short)} series too short: {shown} points; window {length} + horizon "
            f"{window.horizon} + val {val} + test {test} needs at least {need}"
        )


def _origins(ds: Dataset, split: SplitConfig, window: WindowConfig, which: str) -> list[tuple[int, int]]:
    length = sizes(split, window)[2]
    out: list[tuple[int, int]] = []
    for k, s in enumerate(ds.series):
        n = len(s.values)
        train_end, val_end = bounds(n, split)
        if which == "train":
            first, last, step = length, train_end - window.horizon, window.stride
        elif which == "val":
            first, last, step = train_end, val_end - window.horizon, 1
        else:
            first, last, step = val_end, n - window.horizon, 1
        first = max(first, length)
        # Count the stride back from the newest window so the freshest data is always used.
        out.extend((k, t) for t in range(last, first - 1, -step))
    return sorted(out)


def model_input(values: np.ndarray, t: int, length: int, horizon: int, now: int) -> np.ndarray:
    """The model's input window before position ``t`` of a series' ``values`` ``(time, columns)``
    (``Dataset.features``): ``(length, columns)``, the first ``now`` columns of steps ``t - length
    .. t - 1`` and the known inputs' columns after them ``horizon`` steps ahead
    (``ModelSpec.lead``), so the last ``horizon`` rows carry the forecast steps' known values.
    Needs ``t + horizon <= len(values)`` when there are known inputs."""
    if now == values.shape[1]:
        return values[t - length : t]
    return np.concatenate(
        [values[t - length : t, :now], values[t - length + horizon : t + horizon, now:]], axis=1
    )


def cut(ds: Dataset, pairs: list[tuple[int, int]], window: WindowConfig) -> Windows:
    n_targets, sent = len(ds.targets), len(ds.now)
    n = len(pairs)
    length = window.length
    if length is None:
        raise ValueError("window.length is resolved from the data first")
    x = np.empty((n, length, len(ds.features)), dtype=np.float32)
    y = np.empty((n, window.horizon, n_targets), dtype=np.float32)
    for i, (k, t) in enumerate(pairs):
        values = ds.series[k].values
        x[i] = model_input(values, t, length, window.horizon, sent)
        y[i] = values[t : t + window.horizon, :n_targets]
    series = np.array([k for k, _ in pairs], dtype=np.int64)
    origin = np.array([t for _, t in pairs], dtype=np.int64)
    return Windows(x=x, y=y, series=series, origin=origin)


def make_windows(ds: Dataset, split: SplitConfig, window: WindowConfig) -> dict[str, Windows]:
    """Train, val and test windows of every series, pooled across series."""
    check_lengths(ds, split, window)
    return {which: cut(ds, _origins(ds, split, window, which), window) for which in SPLITS}


def train_statistics(ds: Dataset, split: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over the training split of all series: ``(features,)`` each."""
    parts = [s.values[: bounds(len(s.values), split)[0]] for s in ds.series]
    stacked = np.concatenate(parts, axis=0).astype(np.float64)
    mean = stacked.mean(axis=0)
    std = stacked.std(axis=0)
    std[std < 1e-8] = 1.0  # a constant feature carries no scale
    return mean.astype(np.float32), std.astype(np.float32)
