"""Adaptive batching: concurrent forecasts for one model in one worker answered by one model call.

A recurrent model costs far more per series at batch 1 than at batch 64
(docs/benchmarks.md, "Adaptive batching"). With ``SEQCAST_BATCH_MAX_SIZE`` above
1 and several threads per worker (``SEQCAST_THREADS``), request threads meet in
the model's ``BatchingPredictor``: when no batch is running, the thread that
arrives leads one, with every input waiting (up to ``max_size`` series; if not
full, it waits up to ``max_delay`` for more), runs the model once on all of
them and gives each request its own rows back; the threads that arrive while
it runs wait, and when it is done one of them leads the next batch with
everything that queued meanwhile. No thread of its own, so no hand-over to
another thread before the model runs: an idle worker answers a lone request
at once when ``max_delay`` is 0 (the default), and under load batches form
because requests pile up while the model runs.

Each request keeps its own validation, intervals and errors: only the model
call is shared, and a failure of that call is raised in every request of the
batch (as it would have been in each alone). Inputs of different shapes
(history lengths, a quantile head's bounds asked or not) go to separate
calls. A request with ``max_size`` series or more skips the queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.bundle.manifest import ModelSpec
from service.bundle.predictor import Predictor

# (requests, series, seconds each request waited in the queue) of one model call
BatchObserver = Callable[[int, int, list[float]], None]


@dataclass(eq=False)
class _Job:
    x: np.ndarray  # (batch, time, features)
    bounds: bool  # a quantile head's learned bounds too (predict_bounds)
    queued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    y: np.ndarray | None = None
    learned: np.ndarray | None = None
    error: BaseException | None = None


class BatchingPredictor:
    """A ``Predictor`` that gathers concurrent calls into one call of ``inner``."""

    def __init__(
        self,
        inner: Predictor,
        max_size: int,
        max_delay: float = 0.0,
        observe: BatchObserver | None = None,
    ) -> None:
        if max_size < 2:
            raise ValueError("a batch of at most one series gathers nothing: use the predictor itself")
        self.inner = inner
        self.max_size = max_size
        self.max_delay = max_delay  # seconds a call that is not full waits for more
        self._observe = observe
        self._pending: list[_Job] = []
        self._running = False  # a leader is gathering or running a batch
        self._cond = threading.Condition()

    @property
    def spec(self) -> ModelSpec:
        return self.inner.spec

    def predict(self, x: np.ndarray) -> np.ndarray:
        y, _ = self._submit(x, bounds=False)
        return y

    def predict_bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, learned = self._submit(x, bounds=True)
        assert learned is not None
        return y, learned

    def _submit(self, x: np.ndarray, bounds: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if len(x) >= self.max_size:  # a batch already: nothing to gain by waiting for others
            return _run(self.inner, x, bounds)
        job = _Job(np.ascontiguousarray(x, dtype=np.float32), bounds)
        with self._cond:
            self._pending.append(job)
            if self._running and self.max_delay > 0:
                self._cond.notify_all()  # a leader waiting for company counts this one
            while not job.done.is_set():
                if self._running:
                    self._cond.wait()  # a leader runs: it takes this job, or hands over after
                    continue
                # No batch is running: this thread leads the next one, with every job waiting.
                self._running = True
                jobs = self._gather()
                self._cond.release()
                try:
                    self._serve(jobs)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        assert job.y is not None
        return job.y, job.learned

    def _gather(self) -> list[_Job]:
        """The waiting jobs, oldest first, up to ``max_size`` series (at least one job); if that is
        not full, more that arrive within ``max_delay``. Called holding the condition's lock."""
        deadline = time.perf_counter() + self.max_delay
        while self.max_delay > 0 and sum(len(j.x) for j in self._pending) < self.max_size:
            left = deadline - time.perf_counter()
            if left <= 0 or not self._cond.wait(left):
                break
        jobs: list[_Job] = []
        size = 0
        while self._pending and (not jobs or size + len(self._pending[0].x) <= self.max_size):
            job = self._pending.pop(0)
            jobs.append(job)
            size += len(job.x)
        return jobs

    def _serve(self, jobs: list[_Job]) -> None:
        """One model call per input shape; each job gets its rows, or the call's error."""
        started = time.perf_counter()
        groups: dict[tuple[tuple[int, ...], bool], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((job.x.shape[1:], job.bounds), []).append(job)
        for (_, bounds), group in groups.items():
            try:
                x = group[0].x if len(group) == 1 else np.concatenate([j.x for j in group])
                y, learned = _run(self.inner, x, bounds)
                start = 0
                for job in group:
                    rows = slice(start, start + len(job.x))
                    job.y = y[rows]
                    job.learned = None if learned is None else learned[:, :, rows]
                    start = rows.stop
            except BaseException as exc:  # every request of the call gets it, as it would alone
                for job in group:
                    job.error = exc
            finally:
                for job in group:
                    job.done.set()
            if self._observe is not None:
                self._observe(len(group), sum(len(j.x) for j in group), [started - j.queued for j in group])


def _run(predictor: Predictor, x: np.ndarray, bounds: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if bounds:
        return predictor.predict_bounds(x)
    return predictor.predict(x), None
