"""Metrics and baselines on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import SplitConfig, WindowConfig
from training.data import Dataset, Series
from training.evaluate import format_table, mase_scales, naive, score, seasonal_naive
from training.windows import make_windows


def seasonal_dataset(n: int = 48, season: int = 4) -> Dataset:
    t = np.arange(n)
    values = (10 + t + 5 * np.sin(2 * np.pi * t / season)).astype(np.float32).reshape(n, 1)
    return Dataset(
        series=[Series("s", values, pd.date_range("2000-01-01", periods=n, freq="QS"))],
        targets=["v"],
        covariates=[],
        frequency="QS",
        source="t",
    )


SPLIT = SplitConfig(test=8, val=8)
WINDOW = WindowConfig(length=8, horizon=4)


def test_perfect_forecast_scores_zero_and_baselines_are_positive():
    ds = seasonal_dataset()
    test = make_windows(ds, SPLIT, WINDOW)["test"]
    m = score(ds, SPLIT, test, lambda x: test.y.copy(), season=4)
    assert m.model.mae == 0 and m.model.rmse == 0 and m.model.smape == 0 and m.model.mase == 0
    assert m.naive.mae > 0 and m.seasonal_naive.mae > 0
    assert m.windows == len(test) == 5
    assert len(m.per_step["mae"]) == 4


def test_baselines_read_the_right_history():
    ds = seasonal_dataset()
    test = make_windows(ds, SPLIT, WINDOW)["test"]
    values = ds.series[0].values[:, 0]
    t = int(test.origin[0])
    np.testing.assert_array_equal(naive(test, 1)[0, :, 0], np.repeat(values[t - 1], 4))
    np.testing.assert_array_equal(seasonal_naive(ds, test, 4)[0, :, 0], values[t - 4 : t])


def test_mase_scale_is_the_insample_seasonal_naive_mae():
    ds = seasonal_dataset()
    scale = mase_scales(ds, SPLIT, season=4)
    insample = ds.series[0].values[:40, 0].astype(np.float64)  # before the test split
    assert scale[0, 0] == pytest.approx(np.abs(insample[4:] - insample[:-4]).mean())
    # a trend + season series: the seasonal difference is exactly the trend step x season
    assert scale[0, 0] == pytest.approx(4.0, rel=1e-5)


def test_known_errors():
    ds = seasonal_dataset()
    test = make_windows(ds, SPLIT, WINDOW)["test"]
    m = score(ds, SPLIT, test, lambda x: test.y + 2.0, season=4)
    assert m.model.mae == pytest.approx(2.0, rel=1e-5)
    assert m.model.rmse == pytest.approx(2.0, rel=1e-5)
    assert m.model.mase == pytest.approx(2.0 / 4.0, rel=1e-5)
    table = format_table(m)
    assert "seasonal naive (lag 4)" in table and "0.500" in table


def test_flat_series_has_no_mase():
    flat = Dataset(
        series=[
            Series("f", np.ones((40, 1), np.float32), pd.date_range("2000-01-01", periods=40, freq="MS"))
        ],
        targets=["v"],
        covariates=[],
        frequency="MS",
        source="t",
    )
    test = make_windows(flat, SPLIT, WINDOW)["test"]
    m = score(flat, SPLIT, test, lambda x: test.y.copy(), season=12)
    assert m.model.mase is None and m.model.mae == 0
