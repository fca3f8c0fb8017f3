"""One optimiser step of the training loop: eager, or the whole step captured in a CUDA graph.

A small recurrent network on a GPU is launch-bound: an LSTM 2x64 at batch 256
spends most of an eager step launching a few hundred small kernels (forward,
backward, clipping, Adam), each one waiting on Python. A CUDA graph records
the step's kernels once and replays them with one launch, which is PyTorch's
documented "whole network capture":
https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture

What capture needs, and how ``fit`` provides it:

- static shapes: every batch has ``batch`` windows (the last ragged batch of an
  epoch is dropped; the order is reshuffled each epoch, so no window is left
  out for good) and the same window length (not for generation from a short
  context, whose batches are cut to random lengths);
- static memory: batches are copied into the same two input tensors; the
  gradients live in the graph's own memory pool (``zero_grad(set_to_none)``
  before the capture, never between replays);
- no host synchronisation inside the step: Adam with ``capturable=True`` and
  its learning rate as a tensor on the device (ReduceLROnPlateau fills it in
  place, so the captured step sees each new rate); the running loss is summed
  on the device and read once per epoch;
- warm-up: a few eager steps on a side stream before the capture (lazy cuDNN
  and optimiser state), which are real training steps on real batches.

If the capture fails (an operation that synchronises, a library that cannot be
captured), the step says so in the log and keeps training eagerly: the result
is the same, only slower. ``bf16`` runs the forward pass and the loss under
``torch.autocast``; the weights, Adam's state and the gradients stay float32,
so validation, export and ONNX parity are those of a float32 model.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

log = logging.getLogger("seqcast.train")

# Eager steps before the capture: the docs' example uses 3 (cuDNN and Adam allocate lazily).
WARMUP_STEPS = 3


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision: ``bf16`` autocasts matrix products and recurrent cells."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batches(order: torch.Tensor, batch: int, static: bool) -> Iterator[torch.Tensor]:
    """Slices of ``order`` of ``batch`` indices; ``static``: only full ones (a CUDA graph's
    shapes are fixed), and the whole order as one batch when it is shorter than ``batch``."""
    n = len(order)
    if static:
        batch = min(batch, n)
        n -= n % batch
    for i in range(0, n, batch):
        yield order[i : i + batch]


def adam(params: list[nn.Parameter], lr: float, weight_decay: float, device: torch.device, graph: bool):
    """Adam; for a captured step ``capturable`` with its learning rate as a device tensor, so the
    step never reads a host value and a schedule's new rate reaches the replayed graph."""
    if graph:
        rate = torch.tensor(lr, dtype=torch.float32, device=device)
        return torch.optim.Adam(params, lr=rate, weight_decay=weight_decay, capturable=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def schedule(sched: torch.optim.lr_scheduler.ReduceLROnPlateau, metric: float) -> float:
    """Step the plateau schedule on ``metric``; the learning rate it leaves, as a float.

    A capturable Adam's rate is a device tensor that the captured graph reads: the scheduler
    must change that tensor, not replace it. Recent torch fills it in place; older versions
    (2.8 and before at least) assign a float, which a replayed graph never sees, so the new
    value is written back into each group's own tensor here."""
    groups = sched.optimizer.param_groups
    rates = [group["lr"] for group in groups]
    sched.step(metric)
    for group, rate in zip(groups, rates, strict=True):
        if isinstance(rate, torch.Tensor) and group["lr"] is not rate:
            rate.fill_(float(group["lr"]))
            group["lr"] = rate
    return float(groups[0]["lr"])


class EagerStep:
    """forward, loss, backward, clipping, Adam: one batch, kernels launched one by one.

    ``loss_of(x, y)`` -> scalar loss tensor; ``weight`` scales the gradient (a DDP rank's
    share of the batch) but not the returned loss."""

    def __init__(
        self,
        loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        params: list[nn.Parameter],
        opt: torch.optim.Optimizer,
        clip_norm: float | None,
        precision: str,
        device: torch.device,
    ) -> None:
        self.loss_of, self.params, self.opt, self.clip_norm = loss_of, params, opt, clip_norm
        self.precision, self.device = precision, device

    def __call__(self, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        with autocast(self.device, self.precision):
            loss = self.loss_of(x, y)
        self.opt.zero_grad(set_to_none=True)
        (loss * weight if weight != 1.0 else loss).backward()
        if self.clip_norm:  # 0 or None: off
            nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.opt.step()
        return loss.detach().float()


class GraphStep(EagerStep):
    """The same step, captured in one CUDA graph after ``WARMUP_STEPS`` eager ones and replayed.

    Inputs must keep one shape (``batches(..., static=True)``). Falls back to eager steps for
    good if the last warm-up step synchronises with the host (``torch.cuda.set_sync_debug_mode``
    finds it before a capture can fail on it) or the capture raises."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.done = 0
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.static_loss: torch.Tensor | None = None
        self.side = torch.cuda.Stream(device=self.device)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        assert weight == 1.0, "a captured step trains in one process (no DDP share to weight)"
        if self.failed:
            return self._eager(x, y)
        if self.graph is None and self.done < WARMUP_STEPS:
            return self._warm_up(x, y)
        if self.graph is None:
            self._capture(x, y)
            if self.failed:
                return self._eager(x, y)
        assert self.graph is not None and self.static is not None and self.static_loss is not None
        self.static[0].copy_(x)
        self.static[1].copy_(y)
        self.graph.replay()
        return self.static_loss.clone()

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            # Adam warns when a capturable instance steps outside a graph: here that is meant
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")
            return super().__call__(x, y)

    def _warm_up(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """An eager step on the side stream, as capture requires of the ops it records; the last
        one with host synchronisation an error, so a step that cannot be captured shows here."""
        last = self.done == WARMUP_STEPS - 1
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        try:
            with torch.cuda.stream(self.side):
                before = torch.cuda.get_sync_debug_mode()
                if last:
                    torch.cuda.set_sync_debug_mode("error")
                try:
                    loss = self._eager(x, y)
                finally:
                    torch.cuda.set_sync_debug_mode(before)  # the user's own, if they set one
        except RuntimeError as err:
            self._give_up(err)
            current.wait_stream(self.side)
            return self._eager(x, y)
        current.wait_stream(self.side)
        self.done += 1
        return loss

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.static = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # the gradients are then allocated in the graph's pool
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        try:
            # capture_begin/end by hand rather than `with torch.cuda.graph`, whose exit leaves the
            # process on its side stream when ending the capture raises
            with torch.cuda.stream(self.side):
                graph.capture_begin()
                try:
                    self.static_loss = EagerStep.__call__(self, *self.static)
                finally:
                    graph.capture_end()
        except RuntimeError as err:
            current.wait_stream(self.side)
            self._give_up(err)
            return
        current.wait_stream(self.side)
        self.graph = graph
        log.info("training step captured in a CUDA graph after %d eager steps", self.done)

    def _give_up(self, err: BaseException) -> None:
        cause = f" (after: {err.__context__})" if err.__context__ is not None else ""
        log.warning(
            "cannot capture the training step in a CUDA graph, training eagerly (same result, slower): %s%s",
            err,
            cause,
        )
        torch.cuda.synchronize(self.device)
        self.opt.zero_grad(set_to_none=True)
        self.failed = True


def precision_for(device: torch.device, asked: str) -> str:
    """The precision the steps run in on ``device`` when ``machine.precision`` is ``asked``: bf16
    on a GPU whose recurrent cells autocast to bfloat16, else float32 with a warning."""
    if asked != "bf16":
        return asked
    if device.type != "cuda":
        # oneDNN's LSTM refuses bfloat16 on CPUs without bf16 instructions, and gains little on others
        log.warning("machine.precision bf16 is for GPUs: training on the %s in float32", device.type)
        return "fp32"
    dtype = rnn_autocast_dtype(device)
    if dtype != torch.bfloat16:
        log.warning(
            "this torch's cuDNN recurrent cells give %s under bf16 autocast, not bfloat16: "
            "training in float32",
            "an error" if dtype is None else dtype,
        )
        return "fp32"
    return asked


def rnn_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype a recurrent cell computes in under bf16 autocast on ``device``: cuDNN's autocast
    wrapper has cast RNNs to float16 whatever the dtype asked, in some PyTorch versions, and
    float16 without loss scaling can underflow (``precision_for`` then says float32). None:
    the cell fails under bf16 autocast."""
    cell = nn.LSTM(1, 1, batch_first=True).to(device)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return cell(torch.zeros(1, 1, 1, device=device))[0].dtype
    except RuntimeError as err:  # a cuDNN without bfloat16 recurrent kernels refuses them
        log.debug("a recurrent cell under bf16 autocast fails here: %s", err)
        return None
