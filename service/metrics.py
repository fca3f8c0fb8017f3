"""Prometheus metrics: requests by route and status, latency, series, model versions.

Under gunicorn every worker has its own counters, and a scrape reaches one
worker at random. The gunicorn config therefore points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start;
prometheus-client then keeps the values in shared files and ``/metrics`` sums
them over all workers. Without that variable (tests, ``flask run``) each app
has its own registry.

Each write to a shared file takes a lock and packs a struct: six of them per
forecast cost about 8 us, 3 % of a one-series request. So requests are tallied
in plain Python under one lock and written in batches: by a thread in each
worker every ``flush_seconds`` (``start_flushing``), before this process renders
``/metrics``, and when the worker exits. A scrape may therefore miss up to
``flush_seconds`` of another worker's requests (Prometheus scrapes every 15 s or
so); a worker killed with SIGKILL loses its last unflushed second.
``flush_seconds = 0`` writes every observation at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Forecast latency on CPU spans ~1 ms (one series) to ~100 ms (a large batch).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOTS = len(LATENCY_BUCKETS) + 1  # the last one is +Inf
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
log = logging.getLogger(__name__)

RequestKey = tuple[str, str, int]  # route, method, status
PredictionKey = tuple[str, str]  # model, version


def _add_to_histogram(child: Any, total: float, counts: list[int]) -> None:
    """Add a batch of observations (their sum, and how many fell in each bucket) to a histogram child.

    prometheus-client has no public batch write; ``Histogram.observe`` does
    exactly this one observation at a time (``_sum``, then the first of
    ``_buckets`` whose bound holds the value). A test checks the result against
    ``observe`` (the write-through path), so a release that changes the layout
    fails CI rather than the metrics.
    """
    child._sum.inc(total)
    for slot, n in enumerate(counts):
        if n:
            child._buckets[slot].inc(n)


class Metrics:
    """The service's metrics, registered in a registry of their own (one per app)."""

    def __init__(self, flush_seconds: float = 1.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "seqcast_http_requests_total", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "seqcast_http_request_duration_seconds",
            "time from the request reaching Flask to the response leaving it",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "seqcast_predictions_total",
            "forecast requests answered by the model (with adaptive batching several share one model "
            "call: seqcast_batch_requests)",
            ["model", "version"],
            registry=r,
        )
        self.series = Counter("seqcast_series_total", "series forecast", ["model"], registry=r)
        # A counter, not a histogram: per-call percentiles are in the request latency already,
        # and rate(seconds) / rate(predictions) gives the mean model time for a fraction of the cost.
        self.inference = Counter(
            "seqcast_inference_seconds", "onnxruntime time spent in model calls", ["model"], registry=r
        )
        self.model_info = Gauge(
            "seqcast_model_info",
            "1 for the version each model is served at",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.batch_requests = Histogram(
            "seqcast_batch_requests",
            "requests answered by one model call (adaptive batching, SEQCAST_BATCH_MAX_SIZE)",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_series = Counter(
            "seqcast_batch_series_total", "series in batched model calls", ["model"], registry=r
        )
        self.batch_wait = Histogram(
            "seqcast_batch_queue_seconds",
            "time a request waited for its batched model call to start",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "seqcast_model_load_failures_total", "bundles that failed to load", ["model"], registry=r
        )
        self.flush_seconds = flush_seconds
        # Tallies since the last flush: [count, seconds, per-bucket counts...] and [calls, series, seconds].
        self._requests: dict[RequestKey, list[Any]] = {}
        self._predictions: dict[PredictionKey, list[Any]] = {}
        self._lock = threading.Lock()  # gthread workers tally from several threads
        self._flush_lock = threading.Lock()  # one flush at a time, so writes keep their order
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if not self.flush_seconds:
            self.requests.labels(route, method, str(status)).inc()
            self.latency.labels(route, method).observe(seconds)
            return
        slot = bisect_left(LATENCY_BUCKETS, seconds)  # the first bound >= seconds, as prometheus counts
        key = (route, method, status)
        with self._lock:
            tally = self._requests.get(key)
            if tally is None:
                tally = self._requests[key] = [0, 0.0] + [0] * _SLOTS
            tally[0] += 1
            tally[1] += seconds
            tally[2 + slot] += 1

    def observe_prediction(self, model: str, version: str, series: int, seconds: float) -> None:
        if not self.flush_seconds:
            self.predictions.labels(model, version).inc()
            self.series.labels(model).inc(series)
            self.inference.labels(model).inc(seconds)
            return
        key = (model, version)
        with self._lock:
            tally = self._predictions.get(key)
            if tally is None:
                tally = self._predictions[key] = [0, 0, 0.0]
            tally[0] += 1
            tally[1] += series
            tally[2] += seconds

    def observe_batch(self, model: str, requests: int, series: int, waits: list[float]) -> None:
        """One batched model call (``service.batching``): written at once, one call per batch (not
        per request). A failure to write is logged, never raised into the batcher."""
        try:
            self.batch_requests.labels(model).observe(requests)
            self.batch_series.labels(model).inc(series)
            child = self.batch_wait.labels(model)
            for wait in waits:
                child.observe(wait)
        except Exception:
            log.exception("writing batch metrics failed")

    def flush(self) -> None:
        """Write the tallies since the last flush to the prometheus values (shared files under gunicorn)."""
        with self._flush_lock:
            with self._lock:
                requests, self._requests = self._requests, {}
                predictions, self._predictions = self._predictions, {}
            for (route, method, status), tally in requests.items():
                self.requests.labels(route, method, str(status)).inc(tally[0])
                _add_to_histogram(self.latency.labels(route, method), tally[1], tally[2:])
            for (model, version), (calls, series, seconds) in predictions.items():
                self.predictions.labels(model, version).inc(calls)
                self.series.labels(model).inc(series)
                self.inference.labels(model).inc(seconds)

    def start_flushing(self) -> None:
        """Flush every ``flush_seconds`` from a daemon thread of this process (a worker, after fork)."""
        if not self.flush_seconds or self._flusher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.flush_seconds):
                self._flush_or_log()

        self._flusher = threading.Thread(target=loop, name="seqcast-metrics", daemon=True)
        self._flusher.start()
        # Requests that finish after worker_exit's flush (gthread threads outliving a graceful
        # timeout) are still written when the interpreter exits.
        atexit.register(self.flush)

    def _flush_or_log(self) -> None:
        """``flush``, logging a failure: a full disk must end neither the flusher nor a scrape."""
        try:
            self.flush()
        except Exception:  # the tallies of this batch are lost
            log.exception("writing metrics failed")

    def stop_flushing(self) -> None:
        """Stop the flusher thread and write what is left (gunicorn's ``worker_exit``)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()

    def model_swapped(self, model: str, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self.model_info.labels(model, old).set(0)
        self.model_info.labels(model, new).set(1)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text: summed over all workers in multiprocess mode."""
        self._flush_or_log()  # this process's latest; the other workers' are at most flush_seconds old
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


now = time.perf_counter  # an alias, not a wrapper: it is called four times per request
