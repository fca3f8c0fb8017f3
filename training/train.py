"""The training loop: Adam, early stopping with best-weights restore,
ReduceLROnPlateau, gradient clipping, seeds, cpu|cuda.

Windows are small, so they live on the device as two tensors and batches are
slices of a shuffled index: no DataLoader, no per-step host copies. That keeps
the loop within a few percent of a bare PyTorch loop (``bench/train_speed.py``).
"""

from __future__ import annotations

import copy
import functools
import logging
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from service.bundle.manifest import DAMPING_GRID
from training import distributed, steps
from training.config import MachineConfig, TrainConfig
from training.models import Forecaster, Model
from training.windows import Windows

log = logging.getLogger("seqcast.train")

LOSSES = {"mse": nn.functional.mse_loss, "mae": nn.functional.l1_loss, "huber": nn.functional.smooth_l1_loss}


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    best_epoch: int = 0
    best_val: float = float("inf")
    stopped_early: bool = False
    seconds: float = 0.0
    steps: int = 0
    device: str = "cpu"


def ensemble_result(members: list[TrainResult], best_val: float) -> TrainResult:
    """One result for an ensemble: the members' summed time and steps, the first member's
    history and best epoch, and ``best_val``, the validation loss of the ensemble itself."""
    first = members[0]
    return TrainResult(
        history=first.history,
        best_epoch=first.best_epoch,
        best_val=best_val,
        stopped_early=all(m.stopped_early for m in members),
        seconds=sum(m.seconds for m in members),
        steps=sum(m.steps for m in members),
        device=first.device,
    )


def seed_everything(seed: int) -> None:
    """Same seed, same data, same config -> same weights on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("machine.device='cuda' but no CUDA device is available")
    if choice == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return distributed.local_device(torch.device(choice))


def use_graph(device: torch.device, machine: MachineConfig, ranks: int, ragged: bool) -> bool:
    """Whether ``fit`` captures its step in a CUDA graph (``training.steps``): on a GPU, when
    ``machine.cuda_graph`` allows, in one process (DDP's hooks are not captured here), and with
    batches of one window length (``ragged``: generation from a short context cuts each batch
    to a random length)."""
    return device.type == "cuda" and machine.cuda_graph and ranks == 1 and not ragged


class _TrainStep(nn.Module):
    """One training step's loss as a module's forward, so DistributedDataParallel, which hooks
    ``forward``, sees it (the model's own forward is its forecast, not its training loss)."""

    def __init__(self, model: Model, loss_fn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _scaled_loss(self.model, self.loss_fn, x, y, teacher=True)


def _scaled_loss(
    model: Model, loss_fn, x: torch.Tensor, y: torch.Tensor, bounds: bool = True, teacher: bool = False
) -> torch.Tensor:
    """Loss in normalised units: ``y`` is ``(batch, horizon, targets)`` raw. A quantile head
    (``network.quantiles``) adds the pinball loss of every bound it learns, unless ``bounds`` is
    False (the point forecast's loss alone). ``teacher``: a shift head's training loss, at every
    step of the window and the horizon, each predicted from the true steps before it; without
    it, the loss of the forecast it serves (rolled on its own predictions), which validation
    and early stopping watch."""
    if teacher and isinstance(model, Forecaster) and model.spec.network.head == "shift":
        predicted, actual = model.teacher_scaled(x, y)
        return loss_fn(predicted, actual)
    levels = model.spec.network.quantiles
    y = model.in_frame(x, y)  # the loss is taken where the network forecasts (a heading frame)
    if not levels or not bounds:
        yn, loc, scale = model.forward_scaled(x)
        return loss_fn(yn, (y - loc) / scale)
    yn, learned, loc, scale = model.forward_scaled_bounds(x)
    target = (y - loc) / scale
    tau = _probabilities(tuple(levels), learned.device)
    return loss_fn(yn, target) + pinball(learned.float(), target, tau)  # bf16 bounds: fp32 loss


def quantile_probabilities(levels: list[float]) -> torch.Tensor:
    """``(2, levels, 1, 1, 1)``: the probability below each bound of each central interval, e.g.
    80 -> 0.1 (lower) and 0.9 (upper)."""
    return _probabilities(tuple(levels), torch.device("cpu")).clone()


@functools.cache
def _probabilities(levels: tuple[float, ...], device: torch.device) -> torch.Tensor:
    # Cached per device, for good: a copy from the host inside a captured CUDA graph step is not
    # allowed, and a captured step reads the cached tensor's memory on every replay.
    tail = (1 - torch.tensor(levels, dtype=torch.float32) / 100) / 2
    return torch.stack([tail, 1 - tail]).reshape(2, len(levels), 1, 1, 1).to(device)


def pinball(bounds: torch.Tensor, y: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The pinball (quantile) loss of ``bounds`` ``(2, levels, batch, horizon, targets)`` against
    ``y`` ``(batch, horizon, targets)`` at probabilities ``tau`` (``quantile_probabilities``):
    each bound's mean loss, summed over the bounds. Minimised by the tau-quantile of y."""
    tau = tau.to(bounds.device, bounds.dtype)  # built on the CPU; a model may train on a GPU
    error = y - bounds
    loss = torch.maximum(tau * error, (tau - 1) * error)
    return loss.mean(dim=(2, 3, 4)).sum()


@torch.no_grad()
def evaluate_loss(
    model: Model, loss_fn, x: torch.Tensor, y: torch.Tensor, batch: int = 1024, bounds: bool = True
) -> float:
    """Mean ``_scaled_loss`` over ``(x, y)``; ``bounds``: with a quantile head's pinball loss."""
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        total += float(_scaled_loss(model, loss_fn, xb, yb, bounds)) * len(xb)
    return total / max(len(x), 1)


@torch.no_grad()
def choose_base_damping(model: Forecaster, loss_fn, x: torch.Tensor, y: torch.Tensor) -> float:
    """Set the seasonal base's damping (``Forecaster.set_base_damping``) to the grid value whose
    base forecast has the lowest loss on ``(x, y)`` (the validation windows) and return it.

    Call it before any training step: the correction then is still zero, so the
    model's forecast *is* the base. Ties go to the smaller phi (nearer the plain
    seasonal naive), as the grid is ascending.
    """
    losses = []
    for phi in DAMPING_GRID:
        model.set_base_damping(phi)
        # the base's point forecast alone: a quantile head's untrained bounds would blur the choice
        losses.append(evaluate_loss(model, loss_fn, x, y, bounds=False))
    best = DAMPING_GRID[losses.index(min(losses))]
    model.set_base_damping(best)
    log.info(
        "base_damping auto: phi %s (validation loss %s)",
        best,
        ", ".join(f"{p:g}: {v:.5g}" for p, v in zip(DAMPING_GRID, losses, strict=True)),
    )
    return best


def _validate(model: Model, loss_fn, xv: torch.Tensor, yv: torch.Tensor, rank: int) -> float:
    """The validation loss, computed by rank 0 and broadcast to every rank (``training.distributed``)."""
    return distributed.broadcast(evaluate_loss(model, loss_fn, xv, yv) if rank == 0 else 0.0)


def fit(
    model: Model, train: Windows, val: Windows, cfg: TrainConfig, machine: MachineConfig | None = None
) -> TrainResult:
    """Train ``model`` in place; on return it holds the weights of the best validation epoch.

    ``machine`` says where (device, threads, progress bar); default: the CPU, no bar.
    """
    machine = machine or MachineConfig(device="cpu", progress=False)
    if len(train) == 0:
        raise ValueError("no training windows: the series are too short for this window and split")
    if len(val) == 0:
        raise ValueError("no validation windows: split.val is shorter than the horizon")
    seed_everything(cfg.seed)
    if machine.threads:
        torch.set_num_threads(machine.threads)
    device = pick_device(machine.device)
    model.to(device)
    xt, yt = torch.from_numpy(train.x).to(device), torch.from_numpy(train.y).to(device)
    xv, yv = torch.from_numpy(val.x).to(device), torch.from_numpy(val.y).to(device)
    loss_fn = LOSSES[cfg.loss]
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling independent of other RNG use
    result = TrainResult(device=str(device))
    # Before the first copy of the best state, which must hold the chosen phi.
    if isinstance(model, Forecaster) and model.spec.network.base_damping == "auto":
        choose_base_damping(model, loss_fn, xv, yv)  # the model keeps it, in its buffer and spec
    if not any(p.requires_grad for p in model.parameters()):
        # head "none": the base alone (its damping chosen above) has nothing to learn
        model.eval()
        result.best_val = evaluate_loss(model, loss_fn, xv, yv)
        log.info("no trainable weights (the base alone): val %.4f", result.best_val)
        return result
    rank, ranks = distributed.world()
    step: nn.Module = _TrainStep(model, loss_fn)
    if ranks > 1:  # gradients averaged over the ranks (training.distributed)
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device] if device.type == "cuda" else None
        )
    window = model.spec.input_window
    graph = use_graph(device, machine, ranks, window.min_length < window.length)
    params = list(model.parameters())
    opt = steps.adam(params, cfg.lr, cfg.weight_decay, device, graph)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor, patience=cfg.lr_patience)
    stepper = (steps.GraphStep if graph else steps.EagerStep)(
        step, params, opt, cfg.clip_norm, steps.precision_for(device, machine.precision), device
    )
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    start = time.perf_counter()
    if cfg.validate_initial:
        # "Epoch 0": the initial weights compete too (with model.base_lag they are the seasonal base).
        result.best_val = _validate(model, loss_fn, xv, yv, rank)
        log.info("epoch 0 (initial weights) val %.4f", result.best_val)
    bar = tqdm(
        range(1, cfg.epochs + 1),
        desc="train",
        unit="epoch",
        leave=False,
        disable=not (machine.progress and sys.stderr.isatty()),
    )
    for epoch in bar:
        model.train()
        order = torch.randperm(len(xt), generator=gen).to(device)
        running = torch.zeros((), device=device)  # summed on the device: no host sync per step
        seen = 0
        for idx in steps.batches(order, cfg.batch_size, static=graph):
            weight = 1.0
            if ranks > 1:
                if len(idx) < ranks:  # a rank would have no window to train on
                    continue
                # this rank's share of the batch, its loss weighted by the share's size: DDP's mean
                # over the ranks is then the whole batch's mean loss
                share = idx[rank::ranks]
                weight = len(share) * ranks / len(idx)
                idx = share
            xb = xt[idx]
            if window.min_length < window.length:
                # generation from a short context: each batch sees the last `keep` steps only,
                # any length the model promises to forecast from (window.min_history)
                keep = int(torch.randint(window.min_length, window.length + 1, (1,), generator=gen))
                xb = xb[:, -keep:]
            running += stepper(xb, yt[idx], weight) * len(idx)
            seen += len(idx)
            result.steps += 1
        train_loss = float(running) / max(seen, 1)  # this rank's windows (a graph drops a ragged batch)
        val_loss = _validate(model, loss_fn, xv, yv, rank)
        lr = steps.schedule(sched, val_loss)
        improved = val_loss < result.best_val - 1e-7
        if improved:
            result.best_val, result.best_epoch, since_best = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
        log.info(
            "epoch %d/%d train %.4f val %.4f lr %.2g%s",
            epoch,
            cfg.epochs,
            train_loss,
            val_loss,
            lr,
            " *" if improved else "",
        )
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if since_best >= cfg.patience:
            result.stopped_early = True
            log.info(
                "early stop: no val improvement for %d epochs; best epoch %d", cfg.patience, result.best_epoch
            )
            break
    bar.close()
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    result.seconds = time.perf_counter() - start
    return result
