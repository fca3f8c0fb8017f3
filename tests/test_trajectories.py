"""The vehicle-path generator of the trajectory example (issue 14, item 3): deterministic, and
moving as vehicles do (speeds within limits, smooth changes of speed and heading, stops)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from werkzeug.serving import make_server

from service.app import create_app
from service.settings import Settings
from training.config import load_config
from training.pipeline import publish_run, train_run
from training.trajectories import Motion, constant_velocity, path, paths

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import trajectory_demo  # noqa: E402


def test_paths_are_deterministic_and_long():
    a, b = paths(3, 50, seed=7), paths(3, 50, seed=7)
    assert a.equals(b) and list(a.columns) == ["path", "t", "x", "y"] and len(a) == 150
    assert not a.equals(paths(3, 50, seed=8))


def test_vehicles_move_smoothly_within_their_limits():
    motion = Motion(noise=0.0)
    xy = np.concatenate([path(np.random.default_rng(s), 400, motion)[None] for s in range(10)])
    velocity = np.diff(xy, axis=1)  # (paths, steps, 2) metres per second
    speed = np.hypot(*velocity.transpose(2, 0, 1))
    assert speed.max() <= motion.cruise[1] + 1e-9
    assert np.abs(np.diff(speed, axis=1)).max() <= motion.accel + 1e-6  # no jumps in speed
    moving = (speed[:, 1:] > 1.0) & (speed[:, :-1] > 1.0)  # a heading needs a displacement
    heading = np.arctan2(velocity[..., 1], velocity[..., 0])
    turn = np.abs(np.angle(np.exp(1j * np.diff(heading, axis=1))))[moving]
    assert turn.max() < np.radians(60)  # no vehicle turns on the spot while moving
    assert (turn > np.radians(2)).mean() > 0.05  # and they do turn
    assert (speed < 0.5).any()  # and stop


def test_constant_velocity_repeats_the_last_step():
    history = np.array([[[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]]])  # last step: (+2, +1)
    np.testing.assert_array_equal(constant_velocity(history, 2), [[[5.0, 4.0], [7.0, 5.0]]])


@pytest.mark.slow
def test_the_trajectory_config_trains_and_the_demo_plots_what_the_service_answers(tmp_path: Path) -> None:
    """configs/trajectories.toml (shortened) trains an (x, y) model with a constant-velocity base;
    scripts/trajectory_demo.py sends partial paths to the served model and plots the answers."""
    paths(12, 120, seed=0).to_csv(tmp_path / "trajectories.csv", index=False)
    cfg = load_config(
        REPO / "configs" / "trajectories.toml",
        overrides=[
            f"data.path={tmp_path / 'trajectories.csv'}",
            f"export.model_dir={tmp_path / 'models'}",
            "model.hidden=8",
            "train.epochs=2",
            "machine.progress=false",
        ],
    )
    run = train_run(cfg)
    assert run.model.spec.targets == ["x", "y"]
    # with no correction learned yet the base alone is (nearly) constant velocity: a damping of 0.99
    # or 1 wins validation, not the 0 of "stand still"
    assert run.model.spec.network.base_damping >= 0.98
    assert run.model.spec.network.frame == "heading"
    publish_run(run, tmp_path / "models")
    app = create_app(Settings(model_dir=tmp_path / "models", workers=1, threads=1))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "demo.png"
        url = f"http://127.0.0.1:{server.server_port}"
        assert trajectory_demo.main(["--url", url, "--out", str(out), "--paths", "2"]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        history = paths(1, 60, seed=3)[["x", "y"]].to_numpy()[:20]
        got = trajectory_demo.forecast(url, "trajectories", [history])
        assert got.shape == (1, 10, 2) and np.isfinite(got).all()
        assert np.hypot(*(got[0, 0] - history[-1])) < 30  # a second ahead: near the last position
    finally:
        server.shutdown()
