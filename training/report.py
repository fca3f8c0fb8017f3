"""Pictures that explain a trained model: loss curves and holdout forecasts (PNG bytes)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.data import Dataset  # noqa: E402
from training.windows import Windows  # noqa: E402


def png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def loss_curve(history: list[dict[str, float]], best_epoch: int) -> bytes:
    """Train and validation loss per epoch, the restored epoch marked."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised units)")
    if history:
        ax.set_yscale("log")
    else:  # the automatic recipe chose a linear base: nothing was trained by gradient descent
        ax.text(
            0.5,
            0.5,
            "no network was trained: the model is a fitted base",
            ha="center",
            transform=ax.transAxes,
        )
    ax.legend()
    ax.set_title("Training and validation loss")
    return png(fig)


def forecast_plot(ds: Dataset, test: Windows, pred: np.ndarray, series: int = 0, target: int = 0) -> bytes:
    """The series' history and the first test window's forecast against the truth."""
    s = ds.series[series]
    rows = np.flatnonzero(test.series == series)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    keep = min(len(s.values), 4 * test.x.shape[1] + test.y.shape[1])
    ax.plot(s.timestamps[-keep:], s.values[-keep:, target], color="black", lw=1, label="observed")
    if len(rows):
        i = rows[0]
        t = int(test.origin[i])
        stamps = s.timestamps[t : t + test.y.shape[1]]
        ax.plot(stamps, pred[i, :, target], color="tab:red", lw=2, label="forecast")
    ax.set_title(f"{s.id}: {ds.targets[target]}, first test window")
    ax.legend()
    fig.autofmt_xdate()
    return png(fig)
