"""Train independent models side by side, one process each, on the CPU cores a run may use.

The recipe trains a GRU and an LSTM candidate on the same windows; neither
needs the other, and each is fastest on one thread (``MachineConfig.threads``:
small matrix products on two threads mostly wait on each other). On two cores
they train at the same time, so the recipe takes as long as its slower
network instead of both (sunspot_month: 46 s and 23 s, docs/accuracy.md).

Every job is ``fit`` with its own config and seed, and ``fit`` seeds itself,
so a model trained here has the weights it would have trained in this process
(``tests/test_side_by_side.py`` checks it).

The children come from a fork server, never from a fork of the caller. The
caller may have threads: a test runner's servers, a notebook's kernel, the
OpenMP pool of torch work done on several threads. A child forked from such a
process inherits their locks held and their pools half-made, and can wait
forever in its first parallel region (a CI run hung on it: a GRU forward in a
child, on a futex). The fork server is a fresh interpreter started once per
calling process; it imports this module (and so torch) and forks each child
from itself, single-threaded, so a child starts in a second or less and safe.
Like any ``spawn`` or ``forkserver`` child, it imports the caller's
``__main__`` again under another name: a script that trains must guard its
entry point with ``if __name__ == "__main__":`` (the ``seqcast`` command
does). A child that cannot start (an unguarded script, a full ``/tmp``)
breaks the pool; the jobs then train in this process, and the log says why.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from training.config import MachineConfig, TrainConfig
from training.models import Forecaster
from training.train import TrainResult, fit, pick_device
from training.windows import Windows

log = logging.getLogger("seqcast.train")

START = "forkserver"  # see the module docstring: never a fork of a caller that may have threads


@dataclass
class Job:
    """One model to train: ``fit(model, train, stop, cfg, machine)``, then ``finish(model)``."""

    model: Forecaster
    train: Windows
    stop: Windows
    cfg: TrainConfig
    finish: Callable[[Forecaster], None] | None = None  # a module-level function: it is pickled


def _run(job: Job, machine: MachineConfig, log_level: int | None = None) -> tuple[Forecaster, TrainResult]:
    """Train one job; in a child (``log_level`` given) first send its logs to stderr, as the caller's are."""
    if log_level is not None and not logging.getLogger().handlers:
        # a fork-server child starts with logging unconfigured: its epoch logs would be dropped
        logging.basicConfig(
            level=log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
        )
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
    may not have children), or where a fork server is not available (Windows).
    """
    if jobs < 2 or machine.threads is None or pick_device(machine.device).type != "cpu":
        return 1  # threads None: torch's default, every core per model already
    if multiprocessing.current_process().daemon or START not in multiprocessing.get_all_start_methods():
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
    context = multiprocessing.get_context(START)
    # the server imports torch and this module once; each child is then a fork of it, ready to train
    context.set_forkserver_preload([__name__])
    level = log.getEffectiveLevel()
    try:
        with ProcessPoolExecutor(n, mp_context=context) as pool:
            return list(pool.map(_run, jobs, [quiet] * len(jobs), [level] * len(jobs)))
    except BrokenProcessPool as exc:
        # the jobs' models are untouched here (each child trained a pickled copy): train them in this process
        log.warning(
            "could not train side by side (%s); training one after the other. A script that trains must "
            'guard its entry point with `if __name__ == "__main__":`',
            exc,
        )
        return [_run(job, machine) for job in jobs]
