"""The real gunicorn with several workers and threads, on 127.0.0.1.

- ``SEQCAST_THREADS=4`` selects gthread workers: concurrent forecasts each get
  their own answer, idle connections do not hold a worker, and a new version
  is hot-swapped in while clients forecast;
- with two workers the request-latency histogram that ``/metrics`` shows is
  the sum of both workers' histograms (prometheus multiprocess mode).

Each test publishes the session's tiny trained bundle to a model directory of
its own, so it may publish more versions.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gunicorn_server import call, gunicorn, sample, scrape, served_by_every_worker, wait_until
from prometheus_client.multiprocess import MultiProcessCollector

from service.bundle import store
from service.bundle.manifest import MODEL_FILE
from service.metrics import LATENCY_BUCKETS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROUTE = "/v1/models/<name>/forecast"
LATENCY = "seqcast_http_request_duration_seconds"


@pytest.fixture
def model_dir(tiny_bundle_dir: Any, tmp_path: Path) -> Path:
    """A model directory of this test's own, serving the tiny bundle at its version."""
    bundle = store.bundle_dir(tiny_bundle_dir.model_dir, tiny_bundle_dir.name, tiny_bundle_dir.version)
    models = tmp_path / "models"
    store.publish(models, store.load_manifest(bundle), (bundle / MODEL_FILE).read_bytes())
    return models


def republish(model_dir: Path, name: str) -> str:
    """Publish the served bundle again as a new version (a minute newer) and make it CURRENT."""
    bundle = store.bundle_dir(model_dir, name, store.read_current(model_dir, name) or "")
    manifest = store.load_manifest(bundle)
    created = manifest.created + timedelta(minutes=1)
    version = store.new_version(manifest.onnx_sha256, created)
    store.publish(
        model_dir,
        manifest.model_copy(update={"version": version, "created": created}),
        (bundle / MODEL_FILE).read_bytes(),
    )
    return version


def series(i: int) -> list[float]:
    """Request ``i``'s input, 12 points (the model's window): its own level and slope."""
    return [100.0 + 10.0 * i + (1 + i % 7) * k for k in range(12)]


def forecast_all(base: str, name: str, requests: Sequence[int], clients: int) -> list[tuple[int, Any]]:
    """Send forecasts of ``series(i)`` for each ``i`` from ``clients`` threads at once (each waiting
    for the others before its first request); ``(status, (version header, body))`` in request order."""
    url = f"{base}/v1/models/{name}/forecast"
    start = threading.Barrier(clients)
    local = threading.local()

    def one(i: int) -> tuple[int, Any]:
        if not getattr(local, "started", False):
            local.started = True
            start.wait(timeout=10)
        status, headers, body = call(url, {"series": [{"values": series(i)}]}, timeout=5)
        return status, (headers.get("X-Model-Version"), json.loads(body))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, requests))


@contextmanager
def idle_connections(base: str, n: int) -> Iterator[None]:
    """``n`` clients that connect and send nothing (a slow client, held open for the duration)."""
    host, port = base.removeprefix("http://").split(":")
    with ExitStack() as stack:
        for _ in range(n):
            stack.enter_context(socket.create_connection((host, int(port)), timeout=5))
        yield


def test_gthread_workers_answer_concurrent_forecasts_and_swap_versions(
    tiny_bundle_dir: Any, model_dir: Path, tmp_path: Path
) -> None:
    name, old, torch_model = tiny_bundle_dir.name, tiny_bundle_dir.version, tiny_bundle_dir.torch_model
    with torch.no_grad():
        want = {i: torch_model(torch.tensor(series(i)).reshape(1, 12, 1))[0, :, 0].numpy() for i in range(16)}
    log = tmp_path / "gunicorn.log"
    settings = {"SEQCAST_THREADS": "4", "SEQCAST_POLL_SECONDS": "0.5"}
    with gunicorn(model_dir, log, workers=2, **settings) as (base, _):
        assert "Using worker: gthread" in log.read_text()
        # Two idle connections would hold both sync workers (each blocks reading its request
        # until the worker timeout, 20 s, longer than the clients wait); gthread workers
        # park them and keep answering.
        with idle_connections(base, 2):
            answers = forecast_all(base, name, range(16), clients=16)
        for i, (status, (header, body)) in enumerate(answers):
            assert status == 200, body
            assert header == body["version"] == old
            # Each answer is the forecast of its own request's series, not another thread's.
            np.testing.assert_allclose(body["forecasts"][0]["mean"], want[i], rtol=1e-4, atol=1e-3)

        new = republish(model_dir, name)
        during: list[tuple[int, Any]] = []

        def swapped() -> bool:
            during.extend(forecast_all(base, name, range(8), clients=8))  # forecasting during the swap
            return served_by_every_worker(base, name, new, old)

        wait_until(swapped, 10, f"{new} in every worker")
        assert [s for s, _ in during] == [200] * len(during)
        assert {h for _, (h, _) in during} <= {old, new}
        answers = forecast_all(base, name, range(16), clients=16)
        assert [(s, h, b["version"]) for s, (h, b) in answers] == [(200, new, new)] * 16
        assert "Traceback" not in log.read_text()


def worker_counts(shared: Path) -> dict[int, float]:
    """Forecast requests each worker has written to its own histogram file: ``{pid: count}``."""
    counts = {}
    for path in shared.glob("histogram_*.db"):
        pid = int(path.stem.removeprefix("histogram_"))
        samples = [s for m in MultiProcessCollector.merge([str(path)]) for s in m.samples]
        counts[pid] = sum(
            s.value for s in samples if s.name == f"{LATENCY}_count" and s.labels.get("route") == ROUTE
        )
    return counts


def written(shared: Path, n: int) -> dict[int, float] | None:
    """``worker_counts`` once the workers have written ``n`` forecasts in all, else None."""
    counts = worker_counts(shared)
    return counts if sum(counts.values()) == n else None


def test_request_latency_histograms_are_summed_over_workers(
    tiny_bundle_dir: Any, model_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "metrics"
    settings = {"SEQCAST_METRICS_FLUSH_SECONDS": "0.1", "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with gunicorn(model_dir, tmp_path / "gunicorn.log", workers=2, **settings) as (base, proc):
        workers = {int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()}
        assert len(workers) == 2
        # Every request on a connection of its own (urllib closes it), four at a time, so both
        # workers answer some; repeated until each worker's own file shows it did.
        sent, counts = 0, {}
        for _ in range(10):
            answers = forecast_all(base, tiny_bundle_dir.name, range(20), clients=4)
            assert [s for s, _ in answers] == [200] * 20
            sent += 20
            counts = wait_until(partial(written, shared, sent), 5, f"{sent} forecasts in the workers' files")
            if len([n for n in counts.values() if n]) == 2:
                break
        assert set(counts) == workers and all(counts.values()), counts

        def latency(samples: dict[Any, float], suffix: str, **labels: str) -> float | None:
            return sample(samples, f"{LATENCY}_{suffix}", route=ROUTE, method="POST", **labels)

        def summed() -> dict[Any, float] | None:
            """The scrape, once its count of forecasts is the sum of the workers' (at most a flush away)."""
            samples = scrape(base)
            return samples if latency(samples, "count") == sent else None

        samples = wait_until(
            summed, 5, lambda: f"{sent} forecasts in /metrics: {latency(scrape(base), 'count')}"
        )
        assert (
            sample(samples, "seqcast_http_requests_total", route=ROUTE, method="POST", status="200") == sent
        )
        bounds = [*LATENCY_BUCKETS, math.inf]
        found = [latency(samples, "bucket", le=_le(b)) for b in bounds]
        buckets = [b for b in found if b is not None]
        assert len(buckets) == len(bounds), found
        assert buckets == sorted(buckets)  # cumulative
        assert buckets[-1] == sent
        total = latency(samples, "sum")
        assert total is not None and 0 < total < sent * 5.0  # seconds


def _le(bound: float) -> str:
    """A bucket bound as the exposition writes it in the ``le`` label."""
    return "+Inf" if bound == math.inf else repr(float(bound))
