"""Rolling-origin backtest of the damped seasonal skip on the whole taylor series.

The accuracy bench scores one 96-step window per data set. This checks whether
carrying the last weekly error forward (``model.base_damping``) beats the plain
weekly seasonal naive everywhere or only on that window: every origin of the
12-week series, one 96-step forecast each, MAE against the weekly seasonal
naive's, per week and overall. The forecasts come from the product's own model
(an untrained ``mlp`` + ``base_lag = 336`` + ``base_damping = phi``, whose
correction starts at zero, so it *is* the damped base).

    .venv/bin/python bench/taylor_backtest.py            # ~10 s
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.bundle.manifest import NetworkSpec  # noqa: E402
from training.models import build_model, model_spec  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "taylor.csv"
LAG, HORIZON, WEEK = 336, 96, 336


def forecasts(y: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts ``(origins, horizon)`` from every origin with a full window, and the truth."""
    length = LAG + 1
    cfg = NetworkSpec(head="mlp", hidden=4, base_lag=LAG, base_damping=phi)
    model = build_model(model_spec(cfg, ["value"], ["value"], length, HORIZON)).eval()
    origins = np.arange(length, len(y) - HORIZON + 1)
    x = np.stack([y[o - length : o] for o in origins])[..., None].astype(np.float32)
    with torch.no_grad():
        pred = model(torch.from_numpy(x))[..., 0].numpy()
    truth = np.stack([y[o : o + HORIZON] for o in origins])
    return pred, truth


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--phi", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.98, 0.99])
    args = parser.parse_args()
    y = pd.read_csv(args.data)["value"].to_numpy(np.float64)
    base_pred, truth = forecasts(y, 0.0)
    base = np.abs(base_pred - truth).mean(axis=1)  # MAE per origin
    week = np.arange(len(base)) // WEEK
    weeks = range(int(week.max()) + 1)
    print(f"taylor, {len(y)} half-hours, {len(base)} origins, {HORIZON}-step forecasts")
    print("MAE of the damped base / MAE of the weekly seasonal naive (below 1: better)")
    print("| phi | all origins | origins won | " + " | ".join(f"wk {k + 1}" for k in weeks) + " |")
    print("|---:|---:|---:|" + "---:|" * len(weeks))
    for phi in args.phi:
        pred, _ = forecasts(y, phi)
        mae = np.abs(pred - truth).mean(axis=1)
        per_week = [mae[week == k].mean() / base[week == k].mean() for k in weeks]
        print(
            f"| {phi:g} | {mae.mean() / base.mean():.3f} | {np.mean(mae < base):.0%} | "
            + " | ".join(f"{r:.2f}" for r in per_week)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
