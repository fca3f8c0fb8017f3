"""Rolling-origin backtest: the whole training run repeated at earlier forecast origins.

Origin ``k`` (0 = the newest) drops the last ``k * step`` points of every
series, then trains exactly as ``seqcast train`` does (``pipeline.train_run``:
the automatic recipe or the hand-written model, the same splits, the same
selection) and scores the exported ONNX graph, beside naive and seasonal
naive, on the horizon after that origin (``pipeline.export_run``). So each
origin is a forecast the model would have made then, from what was known then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from service.bundle.manifest import Metrics  # noqa: E402
from training.config import Config  # noqa: E402
from training.data import DataError, Dataset, Series, load_dataset  # noqa: E402
from training.pipeline import export_run, train_run  # noqa: E402


@dataclass
class Origin:
    """One origin's forecast and scores."""

    dropped: int  # points removed from the end of every series
    last: str  # timestamp of the last point the model saw (first series)
    chosen: str  # what the recipe chose (or "hand-written model")
    metrics: Metrics
    forecast: np.ndarray  # (horizon,) first series, first target: the test window's forecast
    stamps: list[str]  # the forecast's timestamps


def truncated(ds: Dataset, drop: int) -> Dataset:
    """The dataset as it was ``drop`` steps ago (every series loses its last ``drop`` points)."""
    if drop == 0:
        return ds
    short = [s.id for s in ds.series if len(s.values) <= drop]
    if short:
        raise DataError(f"series {short[:5]} have no more than {drop} points: too few origins for them")
    series = [Series(s.id, s.values[:-drop], s.timestamps[:-drop]) for s in ds.series]
    return replace(ds, series=series)


def run_backtest(cfg: Config, origins: int, step: int | None = None) -> list[Origin]:
    """Train and score at ``origins`` origins, ``step`` points apart (default: the horizon),
    newest first."""
    if origins < 1:
        raise ValueError("--origins must be at least 1")
    full = load_dataset(cfg.data)
    step = step or cfg.window.horizon
    out = []
    for k in range(origins):
        ds = truncated(full, k * step)
        run = train_run(cfg, ds)
        exported = export_run(run)
        test = run.windows["test"]
        metrics = exported.manifest.metrics
        assert metrics is not None  # export_run scores the test split
        first = int(np.flatnonzero(test.series == 0)[0])
        t = int(test.origin[first])
        s = ds.series[0]
        out.append(
            Origin(
                dropped=k * step,
                last=str(s.timestamps[t - 1]),
                chosen=run.choice.chosen if run.choice is not None else "hand-written model",
                metrics=metrics,
                forecast=exported.predictor.predict(test.x[first : first + 1])[0, :, 0],
                stamps=[str(v) for v in s.timestamps[t : t + test.y.shape[1]]],
            )
        )
    return out


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def table(results: list[Origin]) -> str:
    """Per origin and on average: MASE and sMAPE of the model, naive and seasonal naive."""
    head = f"{'last seen':<22} {'MASE':>7} {'naive':>7} {'s.naive':>7} {'sMAPE%':>7}  chosen"
    lines = [head, "-" * len(head)]
    for r in results:
        m = r.metrics
        lines.append(
            f"{r.last[:22]:<22} {m.model.mase or float('nan'):7.3f} {m.naive.mase or float('nan'):7.3f} "
            f"{m.seasonal_naive.mase or float('nan'):7.3f} {m.model.smape:7.2f}  {r.chosen[:70]}"
        )
    lines.append("-" * len(head))
    kinds = ("model", "naive", "seasonal_naive")
    mean = [_mean([getattr(r.metrics, k).mase for r in results]) for k in kinds]
    smape = _mean([r.metrics.model.smape for r in results])
    label = f"mean of {len(results)} origins"
    lines.append(f"{label:<22} {mean[0]:7.3f} {mean[1]:7.3f} {mean[2]:7.3f} {smape:7.2f}")
    return "\n".join(lines) + "\n"


def plot(ds: Dataset, results: list[Origin], path: Path) -> None:
    """The first series and every origin's forecast of its first target."""
    s = ds.series[0]
    horizon = len(results[0].forecast)
    keep = min(len(s.values), max(r.dropped for r in results) + 6 * horizon)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(s.timestamps[-keep:], s.values[-keep:, 0], color="black", lw=1, label="observed")
    index = {str(v): i for i, v in enumerate(s.timestamps)}
    for n, r in enumerate(results):
        stamps = s.timestamps[[index[v] for v in r.stamps]]
        color = plt.cm.viridis(n / max(1, len(results) - 1))
        ax.plot(stamps, r.forecast, lw=2, color=color, label=f"forecast after {r.last[:10]}")
    ax.set_title(f"{s.id}: {ds.targets[0]}, forecasts from {len(results)} origins")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
