"""Adaptive batching: concurrent forecasts for one model in one worker answered by one model call.

A recurrent model costs far more per series at batch 1 than at batch 256
(docs/benchmarks.md, "Adaptive batching"). With ``SEQCAST_BATCH_MAX_SIZE`` above
1 and several threads per worker (``SEQCAST_THREADS``), each request thread
hands its input to the model's ``BatchingPredictor`` and waits; one batcher
thread per model takes every input waiting in the queue (up to
``max_size`` series), waits up to ``max_delay`` for more if the batch is not
full, runs the model once on all of them, and gives each request its own
rows back. Under load, requests pile up while the model runs, so batches
form without any wait; an idle worker answers a lone request at once when
``max_delay`` is 0 (the default).

Each request keeps its own validation, intervals and errors: only the model
call is shared, and a failure of that call is raised in every request of the
batch (as it would have been in each alone). Inputs of different shapes
(history lengths, a quantile head's bounds asked or not) go to separate
calls. A request with ``max_size`` series or more skips the queue.

The batcher thread starts with the first request after the worker forks and
ends after ``IDLE_SECONDS`` without work (a model swapped out by hot reload
leaves no thread behind).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.bundle.manifest import ModelSpec
from service.bundle.predictor import Predictor

IDLE_SECONDS = 30.0

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
        self.max_delay = max_delay  # seconds to wait for more once the queue is empty
        self._observe = observe
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

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
        self._queue.put(job)
        self._ensure_thread()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.y is not None
        return job.y, job.learned

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="seqcast-batcher", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # a job put after the timeout restarts a thread if needed
                        self._thread = None
                        return
                continue
            self._serve(self._gather(first))

    def _gather(self, first: _Job) -> list[_Job]:
        """``first`` and every job waiting behind it, up to ``max_size`` series; then, if the batch
        is not full, more that arrive within ``max_delay``."""
        jobs, size = [first], len(first.x)
        deadline = time.perf_counter() + self.max_delay
        while size < self.max_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    job = self._queue.get(timeout=left)
                except queue.Empty:
                    break
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
