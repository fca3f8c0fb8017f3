"""Prometheus metrics: requests by route and status, latency, series, model versions.

Under gunicorn every worker has its own counters, and a scrape reaches one
worker at random. The gunicorn config therefore points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start;
prometheus-client then keeps the values in shared files and ``/metrics`` sums
them over all workers. Without that variable (tests, ``flask run``) each app
has its own registry.
"""

from __future__ import annotations

import os
import time

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


class Metrics:
    """The service's metrics, registered in a registry of their own (one per app)."""

    def __init__(self) -> None:
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
            "model calls (one per request batch)",
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
        self.load_failures = Counter(
            "seqcast_model_load_failures_total", "bundles that failed to load", ["model"], registry=r
        )
        # Label children cached by key: .labels() takes a lock and builds a tuple each time.
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._prediction_children: dict[tuple[str, str], tuple[Counter, Counter, Counter]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_prediction(self, model: str, version: str, series: int, seconds: float) -> None:
        children = self._prediction_children.get((model, version))
        if children is None:
            children = (
                self.predictions.labels(model, version),
                self.series.labels(model),
                self.inference.labels(model),
            )
            self._prediction_children[(model, version)] = children
        children[0].inc()
        children[1].inc(series)
        children[2].inc(seconds)

    def model_swapped(self, model: str, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self.model_info.labels(model, old).set(0)
        self.model_info.labels(model, new).set(1)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(model).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text: summed over all workers in multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def now() -> float:
    return time.perf_counter()
