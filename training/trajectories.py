"""Vehicle-like 2-D paths: the trajectory example's data (issue 14; docs/models.md, "Trajectories").

    python -m training.trajectories --paths 480 --steps 240 --seed 0 --out data/trajectories.csv

Each path is a vehicle sampled once a second (``dt``) in metres, driven by a
small state machine whose changes are smooth, as a real vehicle's are:

- **cruise**: straight on (the turn rate decays to zero) at a speed drawn from
  ``cruise`` m/s;
- **turn**: a turn of 30 to 120 degrees, left or right, at a radius drawn from
  ``radius`` metres (turn rate = speed / radius), entered and left gradually
  (the turn rate follows its target with a lag of ``steer_lag``);
- **stop**: brake to a standstill, wait 3 to 10 s, then pull away.

Speed follows its target at most ``accel`` m/s² either way. Each step the
vehicle leaves cruise with probability ``p_turn`` (a turn) or ``p_stop`` (a
stop). The positions carry GPS-like noise of ``noise`` metres.

The CSV is long (one row per path and second): ``path, t, x, y``; ``t`` is the
step number, so the paths are undated (``steps`` of one second), and a model
forecasts ``x`` and ``y`` together (``data.layout = "long"``, ``series_id =
"path"``, ``targets = ["x", "y"]``). ``constant_velocity`` is the baseline
such a model must beat: the last step's displacement repeated, what a
tracking engineer would use.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Motion:
    """How the simulated vehicles move (SI units)."""

    dt: float = 1.0
    cruise: tuple[float, float] = (6.0, 14.0)  # m/s
    radius: tuple[float, float] = (15.0, 60.0)  # m
    accel: float = 1.5  # m/s^2, braking and pulling away alike
    steer_lag: float = 0.35  # share of the gap to the target turn rate closed per step
    p_turn: float = 0.04
    p_stop: float = 0.01
    noise: float = 0.3  # m, per coordinate


@dataclass
class Vehicle:
    """A simulated vehicle's whole state: more than its positions tell (``bench/trajectories.py
    --floor`` forecasts from it, to show how far below constant velocity any forecaster could go)."""

    x: float
    y: float
    heading: float  # rad
    speed: float  # m/s
    target_speed: float
    rate: float = 0.0  # turn rate, rad/s
    target_rate: float = 0.0  # 1/m (curvature)
    mode: str = "cruise"
    left: float = 0.0  # turn angle (rad) or standstill seconds still to go

    @classmethod
    def start(cls, rng: np.random.Generator, motion: Motion = Motion()) -> Vehicle:
        x, y = rng.uniform(0, 1000, size=2)
        heading = rng.uniform(-math.pi, math.pi)
        speed = rng.uniform(*motion.cruise)
        return cls(float(x), float(y), float(heading), float(speed), float(speed))

    def step(self, rng: np.random.Generator, m: Motion = Motion()) -> None:
        """Move one ``dt`` (noise-free)."""
        if self.mode == "cruise":
            draw = rng.random()
            if draw < m.p_turn:
                self.mode, self.left = "turn", math.radians(rng.uniform(30, 120))
                self.target_rate = math.copysign(1.0, rng.random() - 0.5) / rng.uniform(*m.radius)  # 1/m
            elif draw < m.p_turn + m.p_stop:
                self.mode, self.target_speed, self.left = "stop", 0.0, rng.uniform(3, 10)
        if self.mode == "turn":
            self.left -= abs(self.rate) * m.dt
            if self.left <= 0:
                self.mode, self.target_rate = "cruise", 0.0
        elif self.mode == "stop" and self.speed == 0.0:
            self.left -= m.dt
            if self.left <= 0:
                self.mode, self.target_speed = "cruise", rng.uniform(*m.cruise)
        self.speed += float(np.clip(self.target_speed - self.speed, -m.accel * m.dt, m.accel * m.dt))
        # the turn rate is per second: curvature (1/m) times speed, eased in and out
        self.rate += m.steer_lag * (self.target_rate * self.speed - self.rate)
        self.heading += self.rate * m.dt
        self.x += self.speed * math.cos(self.heading) * m.dt
        self.y += self.speed * math.sin(self.heading) * m.dt


def path(
    rng: np.random.Generator, steps: int, motion: Motion = Motion(), states: list[Vehicle] | None = None
) -> np.ndarray:
    """One vehicle's positions, ``(steps, 2)`` metres, noise included; ``states``: filled with a
    copy of the vehicle after each step."""
    vehicle = Vehicle.start(rng, motion)
    out = np.empty((steps, 2))
    for k in range(steps):
        vehicle.step(rng, motion)
        out[k] = (vehicle.x, vehicle.y)
        if states is not None:
            states.append(replace(vehicle))
    return out + rng.normal(0.0, motion.noise, size=out.shape)


def paths(n: int, steps: int, seed: int = 0, motion: Motion = Motion()) -> pd.DataFrame:
    """``n`` paths of ``steps`` seconds, long layout: ``path, t, x, y`` (metres, 2 decimals)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        xy = path(rng, steps, motion)
        frames.append(
            pd.DataFrame(
                {"path": f"v{i:03d}", "t": np.arange(steps), "x": xy[:, 0].round(2), "y": xy[:, 1].round(2)}
            )
        )
    return pd.concat(frames, ignore_index=True)


def constant_velocity(history: np.ndarray, horizon: int) -> np.ndarray:
    """The baseline: ``(..., time, 2)`` -> ``(..., horizon, 2)``, the last step's velocity kept."""
    last, velocity = history[..., -1:, :], history[..., -1:, :] - history[..., -2:-1, :]
    steps = np.arange(1, horizon + 1).reshape((1,) * (history.ndim - 2) + (horizon, 1))
    return last + steps * velocity


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write vehicle-like 2-D paths as a long CSV.")
    parser.add_argument("--paths", type=int, default=480)
    parser.add_argument("--steps", type=int, default=240, help="seconds per path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("data/trajectories.csv"))
    args = parser.parse_args(argv)
    frame = paths(args.paths, args.steps, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"{args.out}: {args.paths} paths x {args.steps} s, {len(frame)} rows")


if __name__ == "__main__":
    main()
