"""The vehicle-path generator of the trajectory example (issue 14, item 3): deterministic, and
moving as vehicles do (speeds within limits, smooth changes of speed and heading, stops)."""

from __future__ import annotations

import numpy as np

from training.trajectories import Motion, constant_velocity, path, paths


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
