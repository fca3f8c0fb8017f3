"""Long memory, measured: what the LSTM and GRU gates buy over a plain RNN.

The task (a "latch", Bengio et al. 1994; Hochreiter and Schmidhuber 1997): a
sequence of ``lag + 1`` random signs, ``±1``; the answer, read after the last
step, is the sign of the first. Every later step is a distractor of the same
size, so a network must hold one bit for ``lag`` steps while its input keeps
changing: the answer depends only on an input ``lag`` steps back. Chance is 50 %.

Each cell (``rnn``, ``lstm``, ``gru``, one layer of ``hidden`` units and a
linear readout) trains with Adam and gradient clipping on fresh batches until
it reaches ``SOLVED`` accuracy on a fixed held-out batch, or a step budget.
The gated cells start with their gates set to remember (chrono initialisation,
Tallec and Ollivier 2018: forget / update biases ``log U(1, lag)``, the LSTM's
input bias their negative), the standard start for long dependencies; a plain
RNN has no gate to set. ``init="default"`` keeps PyTorch's initialisation.

``gradient_fade`` is ``seqcast explain``'s measure for these networks: the mean
``|d output / d input step|`` on held-out sequences. Through a plain RNN it
falls by orders of magnitude within a few dozen steps (Pascanu et al. 2013);
through a gate set to remember it need not.

    python bench/long_memory.py        # accuracy against lag and the fade, one plot (docs/models.md)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from training.models import CELLS

SOLVED = 0.99  # held-out accuracy that counts as solved
Init = Literal["chrono", "default"]


class Latch(nn.Module):
    """A recurrent cell and a linear readout of its last output: ``(batch, time, 1)`` ->
    ``(batch,)`` logits of "the first sign was +"."""

    def __init__(self, cell: str, hidden: int = 32, lag: int = 50, init: Init = "chrono") -> None:
        super().__init__()
        self.cell = CELLS[cell](1, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, 1)
        if init == "chrono" and cell != "rnn":
            keep = torch.log(torch.empty(hidden).uniform_(1.0, max(float(lag), 2.0)))
            with torch.no_grad():
                self.cell.bias_hh_l0.zero_()
                bias = self.cell.bias_ih_l0
                bias.zero_()
                # gate order: LSTM (input, forget, cell, output); GRU (reset, update, new)
                bias[hidden : 2 * hidden] = keep  # forget / update: keep the state
                if cell == "lstm":
                    bias[:hidden] = -keep  # let little in while keeping much

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.cell(x)
        return self.readout(out[:, -1]).squeeze(-1)


def batch(n: int, lag: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``x`` ``(n, lag + 1, 1)`` random signs, ``y`` ``(n,)`` 1.0 where the first is +."""
    x = torch.randint(0, 2, (n, lag + 1, 1), generator=generator).float() * 2 - 1
    return x, (x[:, 0, 0] > 0).float()


@dataclass
class Trained:
    cell: str
    lag: int
    accuracy: float  # held-out, at the end
    steps: int  # optimiser steps taken (fewer than the budget when solved)
    seconds: float
    model: Latch

    @property
    def solved(self) -> bool:
        return self.accuracy >= SOLVED


def train(
    cell: str,
    lag: int,
    steps: int = 600,
    seed: int = 0,
    hidden: int = 32,
    lr: float = 1e-2,
    batch_size: int = 64,
    init: Init = "chrono",
    check_every: int = 25,
) -> Trained:
    """Train one cell on the latch at ``lag`` until it is solved or ``steps`` run out."""
    torch.manual_seed(seed)
    model = Latch(cell, hidden, lag, init)
    data = torch.Generator().manual_seed(seed)
    held_out = batch(1024, lag, torch.Generator().manual_seed(10_000 + seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start, accuracy, step = time.perf_counter(), 0.0, 0
    for step in range(1, steps + 1):
        x, y = batch(batch_size, lag, data)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % check_every == 0 or step == steps:
            accuracy = evaluate(model, *held_out)
            if accuracy >= SOLVED:
                break
    return Trained(cell, lag, accuracy, step, time.perf_counter() - start, model)


def evaluate(model: Latch, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model(x) > 0).float() == y).float().mean())


def gradient_fade(model: Latch, lag: int, n: int = 256, seed: int = 1) -> list[float]:
    """``(lag + 1,)``: mean ``|d logit / d x[t]|`` over held-out sequences, ``t`` steps back (0:
    the newest input, ``lag``: the first, the one the answer depends on). Not relative to the
    newest step, as ``seqcast explain``'s is: here the newest input is a distractor that a
    network which solved the task learned to ignore."""
    x, _ = batch(n, lag, torch.Generator().manual_seed(20_000 + seed))
    x.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    assert x.grad is not None
    return [float(v) for v in x.grad.abs().mean(dim=(0, 2)).flip(0)]  # newest first
