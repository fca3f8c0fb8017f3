"""The training loop's promises (``training.train.fit``): early stopping keeps the best epoch's
weights, the learning rate drops on a validation plateau, and clipping bounds every step's gradient.

The data are made so each behaviour must show: the training targets are twice the
last ``H`` inputs, the validation targets equal them, so a model learning the
training set passes the validation optimum on its way (validation loss falls, then
rises, while training loss keeps falling). A few epochs of a GRU with hidden size 4:
well under a second each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from service.bundle.manifest import NetworkSpec
from training.config import MachineConfig, TrainConfig
from training.models import Forecaster, build_model, model_spec
from training.train import LOSSES, TrainResult, evaluate_loss, fit
from training.windows import Windows

L, H = 8, 4  # input window and horizon of the tiny windows


def windows(gain: float, n: int, seed: int) -> Windows:
    """``n`` windows of uniform noise, x: ``(n, L, 1)``; y: ``(n, H, 1)`` = ``gain`` x the last H inputs."""
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, L, 1)).astype(np.float32)
    y = (gain * x[:, -H:]).astype(np.float32)
    return Windows(x=x, y=y, series=np.zeros(n, dtype=np.int64), origin=np.arange(n, dtype=np.int64))


TRAIN, VAL = windows(2.0, 64, seed=0), windows(1.0, 32, seed=1)


def train_tiny(
    train: Windows = TRAIN, val: Windows = VAL, network: dict[str, Any] | None = None, **options: Any
) -> tuple[Forecaster, TrainResult]:
    """Build the tiny model and its config, and fit it: the one place that knows the signatures of
    ``model_spec``, ``build_model``, ``TrainConfig`` and ``fit``. ``network``: NetworkSpec fields;
    ``options``: TrainConfig fields."""
    torch.manual_seed(0)  # the initial weights, as the pipeline seeds them: not whatever ran before
    spec = NetworkSpec.model_validate({"cell": "gru", "hidden": 4, "scaling": "none", **(network or {})})
    forecaster = build_model(model_spec(spec, ["x"], ["x"], L, H))
    cfg = TrainConfig.model_validate(
        {"epochs": 30, "batch_size": 16, "lr": 0.03, "loss": "mse", "lr_patience": 100, **options}
    )
    return forecaster, fit(forecaster, train, val, cfg, MachineConfig(device="cpu", progress=False))


def val_loss_of(model: Forecaster) -> float:
    return evaluate_loss(model, LOSSES["mse"], torch.from_numpy(VAL.x), torch.from_numpy(VAL.y))


def test_early_stopping_restores_the_best_epoch_not_the_last() -> None:
    model, result = train_tiny(patience=3)
    history = result.history
    val = [h["val_loss"] for h in history]
    best = result.best_epoch
    # The set-up: validation improves for a few epochs, then only gets worse.
    assert 1 < best < len(history)
    assert result.stopped_early and len(history) == best + 3  # stopped after `patience` worse epochs
    assert val[best - 1] == min(val) == result.best_val
    assert val[-1] > val[best - 1]
    # The weights left in the model are the best epoch's, to the last bit.
    assert val_loss_of(model) == result.best_val
    assert not model.training  # handed back in eval mode


def test_learning_rate_drops_by_lr_factor_after_lr_patience_epochs_without_improvement() -> None:
    # No epoch can improve: with a seasonal base of lag H (base_lag) the untrained model forecasts the
    # last H inputs, which are exactly these training targets, so every gradient is zero and
    # the weights (hence the validation loss) never change. ReduceLROnPlateau counts the
    # first epoch as an improvement on infinity, then drops the rate every lr_patience + 1 epochs.
    lr, factor, lr_patience, epochs = 0.01, 0.25, 2, 10
    _, result = train_tiny(
        train=windows(1.0, 64, seed=0), network={"base_lag": H},
        lr=lr, lr_factor=factor, lr_patience=lr_patience, epochs=epochs, patience=100,
    )  # fmt: skip
    assert len(result.history) == epochs and not result.stopped_early
    assert {h["train_loss"] for h in result.history} == {0.0}
    assert len({h["val_loss"] for h in result.history}) == 1  # never better, never worse
    got = [h["lr"] for h in result.history]
    want = [lr * factor ** ((epoch - 1) // (lr_patience + 1)) for epoch in range(1, epochs + 1)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[lr_patience : lr_patience + 2] == pytest.approx([lr, lr * factor], rel=1e-12)  # first drop


def test_the_plateau_is_judged_on_validation_loss() -> None:
    """Training loss still falls while validation loss rises after the best epoch: the rate drops."""
    lr, factor = 0.03, 0.5
    _, result = train_tiny(lr=lr, lr_factor=factor, lr_patience=1, patience=4)
    history, best = result.history, result.best_epoch
    # Epochs up to the drop: the best one, then lr_patience + 1 = 2 worse ones.
    assert len(history) >= best + 2
    train = [h["train_loss"] for h in history[: best + 2]]
    assert all(b < a for a, b in zip(train, train[1:], strict=False))  # no plateau in training loss
    assert all(h["val_loss"] > result.best_val for h in history[best : best + 2])
    lrs = [h["lr"] for h in history]
    assert lrs[: best + 1] == [lr] * (best + 1)
    assert lrs[best + 1] == pytest.approx(lr * factor, rel=1e-12)


class StepSpy:
    """Records the total gradient norm the optimizer sees at each ``step`` (after any clipping)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.norms: list[float] = []
        original = torch.optim.Adam.step

        def step(opt: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
            grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            return original(opt, *args, **kwargs)

        monkeypatch.setattr(torch.optim.Adam, "step", step)


@pytest.mark.parametrize("off", [None, 0.0])  # both spell "no clipping"
def test_clipping_bounds_every_steps_gradient_norm(monkeypatch: pytest.MonkeyPatch, off: Any) -> None:
    # Targets 20 x the inputs: raw gradient norms of 2 to 10 at every step of these epochs.
    steep, clip = windows(20.0, 64, seed=0), 0.5
    spy = StepSpy(monkeypatch)
    _, result = train_tiny(train=steep, clip_norm=clip, epochs=3)
    clipped, spy.norms = spy.norms, []
    assert len(clipped) == result.steps == 3 * len(steep) // 16
    assert max(clipped) <= clip * (1 + 1e-6)
    assert min(clipped) > clip * 0.99  # scaled down to the bound, not below it

    # The same run without clipping: the optimizer sees the raw norms, above the bound (so the
    # check above can fail) and above the default clip_norm of 1 (so "off" is not a default).
    _, result = train_tiny(train=steep, clip_norm=off, epochs=3)
    assert len(spy.norms) == result.steps
    assert min(spy.norms) > 2 * 1.0
