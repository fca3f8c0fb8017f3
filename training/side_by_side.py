"""Train independent models side by side, one process each, on the CPU cores a run may use.

The recipe trains a GRU and an LSTM candidate on the same windows; neither
needs the other, and each is fastest on one thread (``MachineConfig.threads``:
small matrix products on two threads mostly wait on each other). On two cores
they train at the same time, so the recipe takes as long as its slower
network instead of both (sunspot_month: 46 s and 23 s, docs/accuracy.md).

Every job is ``fit`` with its own config and seed, and ``fit`` seeds itself,
so a model trained here has the weights it would have trained in this process
(``tests/test_side_by_side.py`` checks it). Children are forked, as PyTorch's
DataLoader workers are: a spawned child would import the caller's ``__main__``
again, and a script without a main guard would run twice. Like those workers,
each child keeps its threads at ``machine.threads`` (1 by default), so the
parent's OpenMP pool is never needed in a child. The parent must not have run
torch on several threads before it forks: a child of a process whose OpenMP
pool has several threads can hang in its first parallel region.
``training.pipeline.train_run`` sets ``machine.threads`` before any torch work
for that reason; a program that runs torch on more threads first and then
trains should set ``machine.jobs = 1``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from training.config import MachineConfig, TrainConfig
from training.models import Forecaster
from training.train import TrainResult, fit, pick_device
from training.windows import Windows

log = logging.getLogger("seqcast.train")


@dataclass
class Job:
    """One model to train: ``fit(model, train, stop, cfg, machine)``, then ``finish(model)``."""

    model: Forecaster
    train: Windows
    stop: Windows
    cfg: TrainConfig
    finish: Callable[[Forecaster], None] | None = None  # a module-level function: it is pickled


def _run(job: Job, machine: MachineConfig) -> tuple[Forecaster, TrainResult]:
    result = fit(job.model, job.train, job.stop, job.cfg, machine)
    if job.finish is not None:
        job.finish(job.model)
    return job.model, result


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what a container or taskset allows, not the host's count
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def processes(machine: MachineConfig, jobs: int) -> int:
    """How many processes train ``jobs`` models: 1 unless side by side can help and is allowed.

    ``machine.jobs`` caps it (1: always in this process); otherwise the cores
    divided by the threads each model uses. One process when the threads are
    torch's default (each model uses every core already), on a GPU (a forked
    child cannot use CUDA once the parent has), in a daemon process (which
    may not have children), or where fork is not available.
    """
    if jobs < 2 or machine.threads is None or pick_device(machine.device).type != "cpu":
        return 1  # threads None: torch's default, every core per model already
    if multiprocessing.current_process().daemon or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    most = machine.jobs if machine.jobs is not None else max(1, _cores() // machine.threads)
    return max(1, min(jobs, most))


def train_all(jobs: Sequence[Job], machine: MachineConfig) -> list[tuple[Forecaster, TrainResult]]:
    """Train every job; returns (trained model, result) in the order of ``jobs``.

    With more than one process the children get no progress bar (two bars on
    one terminal overwrite each other); their epoch logs still reach stderr.
    """
    n = processes(machine, len(jobs))
    if n == 1:
        return [_run(job, machine) for job in jobs]
    log.info("training %d models side by side in %d processes", len(jobs), n)
    quiet = machine.model_copy(update={"progress": False})
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_run, jobs, [quiet] * len(jobs)))
