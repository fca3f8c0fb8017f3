"""The trajectory model against constant-velocity extrapolation, on vehicles it never saw (issue 14).

    .venv/bin/python -m training.trajectories --out data/trajectories.csv
    .venv/bin/seqcast train --config configs/trajectories.toml
    PYTHONPATH=$PWD .venv/bin/python bench/trajectories.py      # the newest trajectories bundle

Fresh paths from ``training.trajectories`` (another seed than the training
data's), every origin 5 s apart where the model's window and horizon fit. For
each horizon step the mean distance in metres between forecast and true
position, for the served graph (onnxruntime, as the service runs it) and for
constant velocity (the last step's displacement repeated), and their ratio.
Goal: the model's 10-step error at least 30 % below constant velocity's.

``--floor`` needs no model: the error of the mean of 100 simulated futures from each vehicle's
exact hidden state, on fresh paths, against constant velocity's (about 4 minutes).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.bundle import store  # noqa: E402
from service.bundle.predictor import OnnxPredictor  # noqa: E402
from training.trajectories import Vehicle, constant_velocity, path, paths  # noqa: E402


def windows(
    n_paths: int, steps: int, seed: int, length: int, horizon: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """(history ``(n, length, 2)``, future ``(n, horizon, 2)``) from fresh paths."""
    frame = paths(n_paths, steps, seed)
    xs, ys = [], []
    for _, group in frame.groupby("path", sort=False):
        xy = group[["x", "y"]].to_numpy(np.float64)
        for end in range(length, len(xy) - horizon + 1, stride):
            xs.append(xy[end - length : end])
            ys.append(xy[end : end + horizon])
    return np.stack(xs), np.stack(ys)


def floor(
    n_paths: int, seed: int, length: int, horizon: int, sims: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """``(floor, cv)``, each ``(horizon,)`` metres: the error of the mean of ``sims`` simulated
    futures from each vehicle's exact hidden state (``Vehicle``: speed, heading, turn rate, the
    turn still to go), which no forecaster reading positions can beat by much, and constant
    velocity's on the same windows."""
    rng = np.random.default_rng(seed)
    errors, errors_cv = [], []
    for _ in range(n_paths):
        states: list[Vehicle] = []
        xy = path(rng, 240, states=states)
        for end in range(length, len(xy) - horizon + 1, 5):
            futures = np.empty((sims, horizon, 2))
            for j in range(sims):
                vehicle, own = replace(states[end - 1]), np.random.default_rng(rng.integers(1 << 62))
                for k in range(horizon):
                    vehicle.step(own)
                    futures[j, k] = (vehicle.x, vehicle.y)
            truth = xy[end : end + horizon]
            errors.append(np.hypot(*(futures.mean(axis=0) - truth).T))
            errors_cv.append(np.hypot(*(constant_velocity(xy[end - length : end], horizon) - truth).T))
    return np.mean(errors, axis=0), np.mean(errors_cv, axis=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--name", default="trajectories")
    parser.add_argument("--paths", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1, help="the training data used seed 0")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="no model: how far below constant velocity any forecaster could go",
    )
    args = parser.parse_args(argv)
    if args.floor:
        best, cv = floor(20, args.seed, 20, 10)
        print("| step (s) | mean of 100 futures from the exact state (m) | constant velocity (m) | ratio |")
        print("|---:|---:|---:|---:|")
        for k in range(len(best)):
            print(f"| {k + 1} | {best[k]:.2f} | {cv[k]:.2f} | {best[k] / cv[k]:.2f} |")
        return
    version = store.read_current(args.model_dir, args.name)
    if version is None:
        raise SystemExit(
            f"no {args.name} model in {args.model_dir}: seqcast train --config configs/trajectories.toml"
        )
    predictor = OnnxPredictor.load(store.bundle_dir(args.model_dir, args.name, version))
    spec = predictor.spec
    length, horizon = spec.input_window.length, spec.horizon
    history, future = windows(args.paths, 240, args.seed, length, horizon, stride=5)
    model = predictor.predict(history.astype(np.float32)).astype(np.float64)  # (n, horizon, 2): x, y
    cv = constant_velocity(history, horizon)
    err_model = np.hypot(*(model - future).transpose(2, 0, 1)).mean(axis=0)  # (horizon,) metres
    err_cv = np.hypot(*(cv - future).transpose(2, 0, 1)).mean(axis=0)
    print(f"{args.name} {version}: {len(history)} windows from {args.paths} fresh paths (seed {args.seed})")
    print("| step (s) | model (m) | constant velocity (m) | model / cv |")
    print("|---:|---:|---:|---:|")
    for k in range(horizon):
        print(f"| {k + 1} | {err_model[k]:.2f} | {err_cv[k]:.2f} | {err_model[k] / err_cv[k]:.2f} |")
    drop = 1 - err_model[-1] / err_cv[-1]
    print(f"{horizon}-step error {drop:.0%} below constant velocity (goal: at least 30 %)")


if __name__ == "__main__":
    main()
