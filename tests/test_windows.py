"""Chronological split and windows: shapes, counts, and no leakage from the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import SplitConfig, WindowConfig
from training.data import DataError, Dataset, Series
from training.windows import bounds, make_windows, train_statistics


def dataset(lengths: list[int], n_features: int = 1, n_targets: int = 1) -> Dataset:
    """Series whose every value is unique, so a value identifies its position."""
    series = []
    for k, n in enumerate(lengths):
        values = (k * 100_000 + np.arange(n * n_features, dtype=np.float32)).reshape(n, n_features)
        series.append(
            Series(id=f"s{k}", values=values, timestamps=pd.date_range("2000-01-01", periods=n, freq="MS"))
        )
    names = [f"f{i}" for i in range(n_features)]
    return Dataset(
        series=series, targets=names[:n_targets], covariates=names[n_targets:], frequency="MS", source="test"
    )


SPLIT = SplitConfig(test=8, val=6)
WINDOW = WindowConfig(length=10, horizon=4, stride=1)


def test_counts_and_shapes():
    ds = dataset([60, 45], n_features=3, n_targets=2)
    w = make_windows(ds, SPLIT, WINDOW)
    # train origins t in [length, train_end - horizon]: 60-14-4-10+1=33 and 45-14-4-10+1=18
    assert len(w["train"]) == 33 + 18
    assert len(w["val"]) == 2 * (SPLIT.val - WINDOW.horizon + 1)
    assert len(w["test"]) == 2 * (SPLIT.test - WINDOW.horizon + 1)
    assert w["train"].x.shape == (51, 10, 3) and w["train"].y.shape == (51, 4, 2)
    assert w["train"].x.dtype == np.float32


def test_window_contents_line_up_with_the_series():
    ds = dataset([40])
    w = make_windows(ds, SPLIT, WINDOW)["test"]
    i = 0
    t = int(w.origin[i])
    np.testing.assert_array_equal(w.x[i, :, 0], ds.series[0].values[t - 10 : t, 0])
    np.testing.assert_array_equal(w.y[i, :, 0], ds.series[0].values[t : t + 4, 0])
    assert t == bounds(40, SPLIT)[1]  # the first test origin is the start of the test split


def test_no_test_or_validation_target_ever_appears_in_a_training_window():
    ds = dataset([80, 50, 35], n_features=2, n_targets=1)
    w = make_windows(ds, SPLIT, WindowConfig(length=12, horizon=4, stride=2))
    train_seen = set(np.unique(w["train"].x)) | set(np.unique(w["train"].y))
    for split in ("val", "test"):
        future_targets = set(np.unique(w[split].y))
        assert future_targets, split
        assert not (train_seen & future_targets), f"{split} targets leak into training windows"
    # and the validation windows never see a test target
    val_seen = set(np.unique(w["val"].x)) | set(np.unique(w["val"].y))
    assert not (val_seen & set(np.unique(w["test"].y)))


def test_stride_keeps_the_newest_training_window():
    ds = dataset([60])
    w = make_windows(ds, SPLIT, WindowConfig(length=10, horizon=4, stride=5))["train"]
    train_end = bounds(60, SPLIT)[0]
    assert int(w.origin.max()) == train_end - 4
    assert set(np.diff(np.sort(w.origin))) == {5}


def test_statistics_come_from_the_training_split_only():
    ds = dataset([50])
    mean, std = train_statistics(ds, SPLIT)
    train_end = bounds(50, SPLIT)[0]
    np.testing.assert_allclose(mean, ds.series[0].values[:train_end].mean(axis=0), rtol=1e-6)
    ds.series[0].values[train_end:] = 1e9  # changing val/test must not move the statistics
    mean2, std2 = train_statistics(ds, SPLIT)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)


def test_short_series_error_names_series_and_lengths():
    ds = dataset([60, 20])
    with pytest.raises(
        DataError,
        match=r"1 series too short: 's1' has 20 points; window 10 \+ horizon 4 "
        r"\+ val 6 \+ test 8 needs at least 28",
    ):
        make_windows(ds, SPLIT, WINDOW)


def test_holdout_shorter_than_horizon_is_rejected():
    with pytest.raises(DataError, match=r"split.test=3 is shorter than window.horizon=4"):
        make_windows(dataset([60]), SplitConfig(test=3, val=6), WINDOW)
