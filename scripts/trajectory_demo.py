"""Send partial vehicle paths to the running service and plot the forecast against what happened.

    .venv/bin/python scripts/trajectory_demo.py --url http://127.0.0.1:8000 --out trajectories.png

Draws fresh paths from ``training.trajectories`` (a seed the model never saw), sends each
one's first seconds to ``POST /v1/models/trajectories/forecast`` as rows of ``[x, y]``, and
plots the history, the true path after it, the service's forecast and constant-velocity
extrapolation (docs/models.md, "Trajectories").
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.trajectories import constant_velocity, paths  # noqa: E402


def forecast(url: str, model: str, histories: list[np.ndarray]) -> np.ndarray:
    """``(series, horizon, 2)``: the service's forecast of each ``(time, 2)`` history."""
    body = {"series": [{"id": f"path {i}", "values": h.round(2).tolist()} for i, h in enumerate(histories)]}
    request = urllib.request.Request(
        f"{url}/v1/models/{model}/forecast",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        forecasts = json.load(answer)["forecasts"]
    return np.asarray([f["mean"] for f in forecasts], dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="trajectories")
    ap.add_argument("--paths", type=int, default=6, help="vehicles to draw")
    ap.add_argument("--seen", type=int, default=20, help="seconds of each path sent to the service")
    ap.add_argument("--seed", type=int, default=7, help="the training data used seed 0")
    ap.add_argument("--out", type=Path, default=Path("trajectories.png"))
    args = ap.parse_args(argv)
    frame = paths(args.paths, 240, args.seed)
    # start each vehicle somewhere along its path, so some are turning or stopping
    starts = np.random.default_rng(args.seed).integers(0, 240 - args.seen - 30, size=args.paths)
    tracks = [g[["x", "y"]].to_numpy(np.float64) for _, g in frame.groupby("path", sort=False)]
    histories = [t[s : s + args.seen] for t, s in zip(tracks, starts, strict=True)]
    predicted = forecast(args.url, args.model, histories)
    horizon = predicted.shape[1]
    truth = [t[s + args.seen : s + args.seen + horizon] for t, s in zip(tracks, starts, strict=True)]
    cv = constant_velocity(np.stack(histories), horizon)
    err = np.hypot(*(predicted - np.stack(truth)).transpose(2, 0, 1))[:, -1]
    err_cv = np.hypot(*(cv - np.stack(truth)).transpose(2, 0, 1))[:, -1]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, args.paths)
    rows = -(-args.paths // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= args.paths:
            ax.axis("off")
            continue
        h, t = histories[i], truth[i]
        ax.plot(h[:, 0], h[:, 1], ".-", color="black", ms=3, lw=0.8, label=f"sent ({args.seen} s)")
        ax.plot(t[:, 0], t[:, 1], "o-", color="black", mfc="white", ms=3, lw=0.8, label="what happened")
        ax.plot(predicted[i, :, 0], predicted[i, :, 1], "o-", color="tab:blue", ms=3,
                label=f"Seqcast ({err[i]:.0f} m off at {horizon} s)")  # fmt: skip
        ax.plot(cv[i, :, 0], cv[i, :, 1], "--", color="tab:red", lw=1,
                label=f"constant velocity ({err_cv[i]:.0f} m)")  # fmt: skip
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=7)
        ax.set_title(f"vehicle {i}", fontsize=9)
    fig.suptitle(f"{horizon} s ahead from the last {args.seen} s of each path (metres)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(
        f"{args.out}: {args.paths} paths; {horizon}-s error {err.mean():.1f} m (Seqcast), "
        f"{err_cv.mean():.1f} m (constant velocity)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
