"""``network.frame = "heading"``: a model of positions that turns each window into its direction of
travel (the trajectory example, issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from service.bundle.manifest import NetworkSpec
from service.bundle.predictor import OnnxPredictor
from training.export import check_parity, to_onnx
from training.models import Heading, build_model, model_spec
from training.trajectories import paths


def frame_model(frame: str = "heading", **network):
    spec = NetworkSpec(
        cell="lstm", head="direct", hidden=16, base_lag=1, base_damping=1.0, frame=frame, **network
    )
    torch.manual_seed(0)
    model = build_model(model_spec(spec, ["x", "y"], ["x", "y"], 20, 10)).eval()
    for p in model.parameters():  # a correction that is not zero, so the network's part shows
        torch.nn.init.normal_(p, std=0.3)
    return model


def histories(n: int = 16) -> torch.Tensor:
    """``(n, 20, 2)`` windows of real-looking paths, hundreds of metres from the origin."""
    frame = paths(2, 120, seed=3)
    xy = np.stack([g[["x", "y"]].to_numpy(np.float32) for _, g in frame.groupby("path")])
    return torch.from_numpy(np.concatenate([xy[:, s : s + 20] for s in range(0, 80, 10)])[:n])


def turned(v: torch.Tensor, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, s], [-s, c]])  # row vectors: v @ rot turns by +angle
    return v @ rot + torch.tensor(shift)


def test_the_frame_puts_the_last_position_at_the_origin_heading_along_x():
    x = histories()
    frame = Heading(x)
    inside = frame.enter(x)
    assert torch.allclose(inside[:, -1], torch.zeros(2), atol=1e-3)
    last_step = inside[:, -1] - inside[:, -2]
    assert (last_step[:, 0] > 0).all() and torch.allclose(last_step[:, 1], torch.zeros(len(x)), atol=1e-3)
    assert torch.allclose(frame.leave(inside), x, atol=1e-3)  # and back


def test_a_heading_model_forecasts_a_turned_path_turned():
    """Turn and move the history: the forecast turns and moves with it (what the frame is for); a
    model in the data's axes does not."""
    x = histories()
    angle, shift = 2.1, (-350.0, 820.0)
    model, fixed = frame_model(), frame_model("fixed")
    with torch.no_grad():
        y, y_turned = model(x), model(turned(x, angle, shift))
        f, f_turned = fixed(x), fixed(turned(x, angle, shift))
    assert torch.allclose(y_turned, turned(y, angle, shift), atol=5e-3)
    assert (f_turned - turned(f, angle, shift)).abs().max() > 0.5  # the test can fail


def test_a_vehicle_that_stopped_keeps_the_axes_and_finite_gradients():
    x = histories(4).clone()
    x[:, -1] = x[:, -2]  # no displacement at the last step: no heading
    x.requires_grad_(True)
    model = frame_model()
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert torch.allclose(Heading(x.detach()).enter(x.detach()), x.detach() - x.detach()[:, -1:], atol=1e-4)


def test_targets_are_taken_into_the_frame_for_the_loss():
    x = histories(4)
    y = x[:, -10:] + 5.0
    model = frame_model()
    assert torch.allclose(model.in_frame(x, y), Heading(x).enter(y))
    assert torch.equal(frame_model("fixed").in_frame(x, y), y)


def test_a_heading_model_exports_with_parity():
    x = histories().numpy()
    model = frame_model()
    checked = check_parity(model, OnnxPredictor.from_bytes(to_onnx(model, x), model.spec), x, 30.0)
    assert checked.max_abs_diff <= checked.allowed


@pytest.mark.parametrize(
    ("network", "targets", "reason"),
    [
        ({}, ["x"], "exactly two targets"),
        ({"quantiles": [80.0]}, ["x", "y"], "no quantiles"),
        ({"scaling": "standard"}, ["x", "y"], "scaling 'window' or 'none'"),
    ],
)
def test_frames_that_cannot_work_are_refused(network, targets, reason):
    with pytest.raises(ValueError, match=reason):
        spec = NetworkSpec(head="direct", frame="heading", **network)
        model_spec(spec, ["x", "y"], targets, 20, 10)
