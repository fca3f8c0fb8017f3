"""Batched metric writes add up to exactly what one write per observation gives."""

from __future__ import annotations

import threading
import time

from prometheus_client import generate_latest

from service.metrics import LATENCY_BUCKETS, Metrics


def exposition(metrics: Metrics) -> list[str]:
    """The text exposition without ``_created`` timestamps (they differ between two registries)."""
    metrics.flush()
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_batched_writes_equal_one_write_per_observation() -> None:
    batched, direct = Metrics(flush_seconds=60), Metrics(flush_seconds=0)
    # Every bucket bound exactly (le is inclusive), just above each, and past the last (+Inf).
    latencies = [*LATENCY_BUCKETS, *(b * 1.0001 for b in LATENCY_BUCKETS), 0.0, 42.0, 0.0123]
    for metrics in (batched, direct):
        for i, seconds in enumerate(latencies):
            metrics.observe_request("/v1/models/<name>/forecast", "POST", 200 if i % 3 else 422, seconds)
            metrics.observe_request("/healthz", "GET", 200, seconds / 2)
            metrics.observe_prediction("m", "v1" if i % 2 else "v2", i + 1, seconds)
        if metrics is batched:
            metrics.flush()  # two flushes: the second adds to the first
            metrics.observe_request("/healthz", "GET", 200, 0.003)
        else:
            metrics.observe_request("/healthz", "GET", 200, 0.003)
    got, want = exposition(batched), exposition(direct)
    assert got == want
    n = len(latencies)
    assert f'seqcast_http_requests_total{{method="GET",route="/healthz",status="200"}} {n + 1}.0' in got
    assert f'seqcast_series_total{{model="m"}} {n * (n + 1) // 2}.0' in got  # 1 + 2 + ... + n
    inf = 'seqcast_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/healthz"}'
    assert f"{inf} {n + 1}.0" in got


def test_nothing_is_written_before_a_flush_and_nothing_twice() -> None:
    metrics = Metrics(flush_seconds=60)
    metrics.observe_request("/healthz", "GET", 200, 0.002)
    line = 'seqcast_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert line not in generate_latest(metrics.registry).decode()
    metrics.flush()
    metrics.flush()
    assert f"{line} 1.0" in generate_latest(metrics.registry).decode()
    assert f"{line} 1.0" in metrics.render()[0].decode()  # render flushes, still once


def test_concurrent_tallies_lose_nothing() -> None:
    metrics = Metrics(flush_seconds=60)
    threads, each = 4, 2000

    def hammer() -> None:
        for _ in range(each):
            metrics.observe_request("/healthz", "GET", 200, 0.001)
            metrics.observe_prediction("m", "v", 2, 0.001)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    stopper = threading.Event()

    def flush_meanwhile() -> None:
        while not stopper.is_set():
            metrics.flush()

    flusher = threading.Thread(target=flush_meanwhile)
    flusher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stopper.set()
    flusher.join()
    text = "\n".join(exposition(metrics))
    requests = 'seqcast_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert f"{requests} {threads * each}.0" in text
    assert f'seqcast_series_total{{model="m"}} {2 * threads * each}.0' in text


def test_the_flusher_thread_writes_on_its_own_and_a_final_time_on_stop() -> None:
    metrics = Metrics(flush_seconds=0.05)
    metrics.start_flushing()
    metrics.observe_prediction("m", "v", 3, 0.01)
    line = 'seqcast_series_total{model="m"} 3.0'
    deadline = time.monotonic() + 5
    while line not in generate_latest(metrics.registry).decode():
        assert time.monotonic() < deadline, "the flusher never wrote"
        time.sleep(0.01)
    metrics.observe_prediction("m", "v", 4, 0.01)
    metrics.stop_flushing()
    assert 'seqcast_series_total{model="m"} 7.0' in generate_latest(metrics.registry).decode()
