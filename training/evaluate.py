"""Forecast accuracy beside naive baselines on the same windows.

Metrics (lower is better): MAE, RMSE, sMAPE (percent, 0..200) and MASE, whose
scale is the in-sample mean absolute seasonal difference of each series and
target, computed on the points before the test split (what the forecaster knew).
Naive repeats the last observed value; seasonal naive repeats the last observed
season (lag = season), read from the series itself so a window shorter than the
season still gets a fair baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from service.bundle.manifest import Metrics, Scores
from service.bundle.predictor import Predictor
from training.config import SplitConfig, WindowConfig
from training.data import Dataset
from training.windows import Windows, bounds, make_windows

Predict = Callable[[np.ndarray], np.ndarray]  # (batch, time, features) -> (batch, horizon, targets)


def mase_scales(ds: Dataset, split: SplitConfig, season: int) -> np.ndarray:
    """``(series, targets)`` in-sample MAE of the seasonal naive forecast before the test split."""
    nt = len(ds.targets)
    scales = np.full((len(ds.series), nt), np.nan)
    for k, s in enumerate(ds.series):
        insample = s.values[: bounds(len(s.values), split)[1], :nt].astype(np.float64)
        lag = season if len(insample) > season else 1
        diffs = np.abs(insample[lag:] - insample[:-lag])
        if len(diffs):
            scales[k] = diffs.mean(axis=0)
    scales[scales <= 1e-12] = np.nan  # a flat series has no scale: MASE undefined there
    return scales


def naive(windows: Windows, n_targets: int) -> np.ndarray:
    """``(n, horizon, targets)``: the last observed value of each target."""
    last = windows.x[:, -1:, :n_targets]
    return np.repeat(last, windows.y.shape[1], axis=1)


def seasonal_naive(ds: Dataset, windows: Windows, season: int) -> np.ndarray:
    """``(n, horizon, targets)``: value one season before each forecast step (last season repeated)."""
    nt = len(ds.targets)
    horizon = windows.y.shape[1]
    out = np.empty_like(windows.y)
    steps = np.arange(horizon)
    for i, (k, t) in enumerate(zip(windows.series, windows.origin, strict=True)):
        values = ds.series[k].values
        lag = season if t - season >= 0 else 1
        idx = t - lag + (steps % lag)
        out[i] = values[idx, :nt]
    return out


def _scores(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> tuple[Scores, dict[str, list[float]]]:
    """pred/truth ``(n, horizon, targets)``, scale ``(n, 1, targets)`` (NaN where undefined)."""
    err = pred.astype(np.float64) - truth.astype(np.float64)
    abs_err = np.abs(err)
    denom = np.abs(pred) + np.abs(truth)
    smape = np.where(denom > 0, 200.0 * abs_err / np.where(denom > 0, denom, 1.0), 0.0)
    scaled = abs_err / scale
    have_scale = bool(np.isfinite(scaled).any())
    per_step = {
        "mae": abs_err.mean(axis=(0, 2)).tolist(),
        "rmse": np.sqrt((err**2).mean(axis=(0, 2))).tolist(),
        "smape": smape.mean(axis=(0, 2)).tolist(),
    }
    if have_scale:
        per_step["mase"] = np.nanmean(scaled, axis=(0, 2)).tolist()
    scores = Scores(
        mae=float(abs_err.mean()),
        rmse=float(np.sqrt((err**2).mean())),
        smape=float(smape.mean()),
        mase=float(np.nanmean(scaled)) if have_scale else None,
    )
    return scores, per_step


def score(
    ds: Dataset, split: SplitConfig, windows: Windows, predict: Predict, season: int, label: str = "test"
) -> Metrics:
    """Score ``predict`` and both baselines on ``windows``."""
    if len(windows) == 0:
        raise ValueError(f"no {label} windows to score")
    nt = len(ds.targets)
    scale = mase_scales(ds, split, season)[windows.series][:, None, :]  # (n, 1, targets)
    model, per_step = _scores(predict(windows.x), windows.y, scale)
    base_naive, _ = _scores(naive(windows, nt), windows.y, scale)
    base_seasonal, _ = _scores(seasonal_naive(ds, windows, season), windows.y, scale)
    return Metrics(
        split=f"{label}: last {split.test} points of each series, {len(windows)} forecast windows",
        windows=len(windows),
        season=season,
        model=model,
        naive=base_naive,
        seasonal_naive=base_seasonal,
        per_step=per_step,
    )


def score_predictor(predictor: Predictor, ds: Dataset, split: SplitConfig, season: int) -> Metrics:
    """Score a bundle's predictor on the test split of ``ds``, at the bundle's own window and horizon.

    Evaluation, retraining (champion and challenger alike) and the trainer's own
    test scores all go through here, on the graph that is served.
    """
    spec = predictor.spec
    if spec.features != ds.inputs(spec.horizon):
        raise ValueError(
            f"the model's features {spec.features} differ from the data's {ds.inputs(spec.horizon)}"
        )
    window = WindowConfig(length=spec.input_window.length, horizon=spec.horizon)
    test = make_windows(ds, split, window)["test"]
    return score(ds, split, test, predictor.predict, season)


def per_series_table(predictor: Predictor, ds: Dataset, split: SplitConfig, season: int) -> str:
    """MASE per series on the test split: the model beside naive and seasonal naive (a panel's
    report; a global model can be good on average and poor on some series)."""
    spec = predictor.spec
    window = WindowConfig(length=spec.input_window.length, horizon=spec.horizon)
    test = make_windows(ds, split, window)["test"]
    nt = len(ds.targets)
    scale = mase_scales(ds, split, season)[test.series][:, None, :]
    forecasts = {
        "model": predictor.predict(test.x),
        "naive": naive(test, nt),
        "seasonal naive": seasonal_naive(ds, test, season),
    }
    errors = {k: np.abs(p - test.y) / scale for k, p in forecasts.items()}  # (n, horizon, targets)
    lines = [f"{'series':<24} {'model':>8} {'naive':>8} {'s.naive':>8}"]
    for k, s in enumerate(ds.series):
        rows = test.series == k
        cells = [float(np.nanmean(e[rows])) if rows.any() else float("nan") for e in errors.values()]
        lines.append(f"{s.id[:24]:<24} " + " ".join(f"{c:8.3f}" for c in cells))
    better = sum(
        float(np.nanmean(errors["model"][test.series == k]))
        < min(float(np.nanmean(errors[b][test.series == k])) for b in ("naive", "seasonal naive"))
        for k in range(len(ds.series))
        if (test.series == k).any()
    )
    lines.append(
        f"the model beats the better of naive and seasonal naive on {better} of {len(ds.series)} series"
    )
    return "\n".join(lines) + "\n"


def format_table(metrics: Metrics, title: str = "") -> str:
    """A plain-text table of the model against the baselines."""
    rows = [
        ("model", metrics.model),
        ("naive", metrics.naive),
        (f"seasonal naive (lag {metrics.season})", metrics.seasonal_naive),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [title or metrics.split, f"{'':{width}}  {'MAE':>10} {'RMSE':>10} {'sMAPE%':>8} {'MASE':>7}"]
    for name, s in rows:
        mase = f"{s.mase:7.3f}" if s.mase is not None else f"{'-':>7}"
        lines.append(f"{name:{width}}  {s.mae:10.4g} {s.rmse:10.4g} {s.smape:8.2f} {mase}")
    if "mase" in metrics.per_step:
        steps = " ".join(f"{v:.2f}" for v in metrics.per_step["mase"])
        lines.append(f"model MASE per step: {steps}")
    return "\n".join(lines)
