"""Training side by side (``training.side_by_side``): children of a fork server train the weights
this process would, in the caller's order, only when it can help and is allowed, and never inherit
a lock that one of the caller's threads holds.

Tiny GRU and LSTM models on windows of noise whose targets are twice the last inputs (a second each).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from service.bundle.manifest import NetworkSpec
from training import side_by_side
from training.config import MachineConfig, TrainConfig
from training.models import Forecaster, build_model, model_spec
from training.side_by_side import Job, processes, train_all
from training.train import TrainResult
from training.windows import Windows

L, H = 8, 4


def windows(n: int, seed: int) -> Windows:
    """x: ``(n, L, 1)`` noise; y: ``(n, H, 1)``, twice the last H inputs."""
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, L, 1)).astype(np.float32)
    zeros, origins = np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    return Windows(x=x, y=2 * x[:, -H:], series=zeros, origin=origins)


TRAIN, VAL = windows(64, seed=0), windows(32, seed=1)


def double_head(model: Forecaster) -> None:
    """A ``finish`` step that shows in the forecasts: the head's weights times two."""
    assert model.head is not None
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(2)


def jobs() -> list[Job]:
    made = []
    for k, cell in enumerate(("gru", "lstm", "gru")):
        torch.manual_seed(k)
        spec = NetworkSpec.model_validate({"cell": cell, "hidden": 4, "scaling": "none"})
        cfg = TrainConfig(epochs=6, batch_size=16, lr=0.03, loss="mse", seed=k)
        made.append(Job(build_model(model_spec(spec, ["x"], ["x"], L, H)), TRAIN, VAL, cfg, double_head))
    return made


def weights(trained: list[tuple[Forecaster, TrainResult]]) -> list[dict[str, torch.Tensor]]:
    return [model.state_dict() for model, _ in trained]


def test_children_train_the_same_weights_in_the_same_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(side_by_side, "_cores", lambda: 2)
    machine = MachineConfig(device="cpu", threads=1, progress=False)
    assert processes(machine, 3) == 2
    parallel = train_all(jobs(), machine)
    serial = train_all(jobs(), machine.model_copy(update={"jobs": 1}))
    for a, b in zip(weights(parallel), weights(serial), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    for (_, ra), (_, rb) in zip(parallel, serial, strict=True):
        assert ra.best_epoch == rb.best_epoch and ra.history == rb.history
    # the three jobs differ (different cells and seeds), so the order check above means something
    with torch.no_grad():
        firsts = {round(float(m(torch.from_numpy(VAL.x[:1])).sum()), 6) for m, _ in serial}
    assert len(firsts) == 3


def test_the_finish_step_runs_in_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(side_by_side, "_cores", lambda: 2)
    machine = MachineConfig(device="cpu", threads=1, progress=False)
    without = jobs()[:2]
    for job in without:
        job.finish = None
    plain, doubled = train_all(without, machine), train_all(jobs()[:2], machine)
    for (a, _), (b, _) in zip(plain, doubled, strict=True):
        x = torch.from_numpy(VAL.x[:4])
        with torch.no_grad():
            assert not torch.allclose(a(x), b(x))


@pytest.mark.parametrize(
    ("cores", "threads", "jobs", "n", "expected"),
    [
        (2, 1, None, 2, 2),  # two cores, one thread each: both at once
        (8, 1, None, 2, 2),  # never more processes than models
        (2, 2, None, 2, 1),  # each model wants both cores
        (4, 2, None, 3, 2),
        (2, 1, 1, 2, 1),  # machine.jobs = 1: one after the other
        (1, 1, None, 2, 1),
        (2, None, None, 2, 1),  # torch's default threads: every core per model already
        (2, 1, None, 1, 1),  # one model
    ],
)
def test_how_many_processes(
    monkeypatch: pytest.MonkeyPatch, cores: int, threads: int | None, jobs: int | None, n: int, expected: int
) -> None:
    monkeypatch.setattr(side_by_side, "_cores", lambda: cores)
    machine = MachineConfig(device="cpu", threads=threads, jobs=jobs, progress=False)
    assert processes(machine, n) == expected


# Held by a thread of the caller while it trains side by side (test below): a forked child would
# inherit it held, by a thread that does not exist in the child, and wait on it forever.
HELD = threading.Lock()


def take_the_held_lock(model: Forecaster) -> None:
    """A ``finish`` step that needs ``HELD`` and records the process it ran in (``model.ran_in``)."""
    with HELD:
        model.ran_in = torch.tensor([os.getpid(), os.getppid()])  # type: ignore[assignment]


def test_a_caller_with_a_thread_holding_a_lock_still_trains_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CI hang of a recipe test, made certain: the caller's other thread holds a lock when the
    children start. Children of the fork server start from a fresh interpreter, so they get their own."""
    monkeypatch.setattr(side_by_side, "_cores", lambda: 2)
    machine = MachineConfig(device="cpu", threads=1, progress=False)
    two = jobs()[:2]
    for job in two:
        job.finish = take_the_held_lock
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with HELD:
            taken.set()
            release.wait(120)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(10)
    done: list[list[tuple[Forecaster, TrainResult]]] = []
    trainer = threading.Thread(target=lambda: done.append(train_all(two, machine)), daemon=True)
    trainer.start()
    trainer.join(90)  # a few seconds when it works; forked children would wait on HELD forever
    release.set()
    assert done, "the children did not finish while a thread of the caller held a lock"
    for model, _ in done[0]:
        pid, parent = (int(v) for v in model.ran_in)
        assert pid != os.getpid() and parent != os.getpid()  # a child, and not a fork of this process
