"""Hot reload under load, with the real gunicorn (2 workers) on 127.0.0.1.

While a few client threads forecast continuously:
- a new version is published: zero failed requests, every answer from the old or
  the new version, and after the swap only the new one;
- a corrupt bundle is published (truncated ONNX; a manifest that does not match
  its graph), each only after every worker has tried and refused the one before:
  zero failed requests, the old version still served, and /readyz and
  /v1/models/<name> say which version failed;
- one worker is killed with SIGKILL: gunicorn replaces it, and the failed
  requests are at most the ones in flight on that worker (recorded).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from gunicorn_server import call, gunicorn, sample, scrape, served_by_every_worker, wait_until

from service.bundle import store
from service.bundle.manifest import Manifest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CLIENTS = 3
WORKERS = 2
POLL = 0.5  # seconds between CURRENT checks in each worker (the smallest allowed)


@dataclass
class Publisher:
    model_dir: Path
    onnx_bytes: bytes
    manifest: Manifest
    clock: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def publish(self, onnx_bytes: bytes | None = None, **changes: Any) -> str:
        """Publish the trained model again (or other bytes) as a new version and make it CURRENT."""
        self.clock += timedelta(minutes=1)
        data = self.onnx_bytes if onnx_bytes is None else onnx_bytes
        sha = store.sha256_bytes(data)
        m = self.manifest.model_copy(
            update={
                "version": store.new_version(sha, self.clock),
                "created": self.clock,
                "onnx_sha256": sha,
                **changes,
            }
        )
        Manifest.model_validate(m.model_dump())  # still a valid manifest
        store.publish(self.model_dir, m, data)
        return m.version


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    from conftest import DEMO_CONFIG, TINY_OVERRIDES

    from training.config import load_config
    from training.pipeline import export_run, train_run

    run = train_run(load_config(DEMO_CONFIG, [*TINY_OVERRIDES, 'export.name="hot"']))
    exported = export_run(run)
    pub = Publisher(tmp_path_factory.mktemp("hot-models"), exported.onnx, exported.manifest)
    pub.publish()
    return pub


def children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


@pytest.fixture
def server(publisher: Publisher, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    publisher.publish()  # start from a good CURRENT (an earlier test may have left a corrupt one)
    log = tmp_path / "gunicorn.log"
    with gunicorn(publisher.model_dir, log, WORKERS, SEQCAST_POLL_SECONDS=str(POLL)) as running:
        yield running


class Load:
    """Client threads forecasting in a loop; every answer is recorded as (time sent, status, version)."""

    def __init__(self, base: str, name: str) -> None:
        self.url = f"{base}/v1/models/{name}/forecast"
        self.body = json.dumps({"series": [{"values": [100.0 + i for i in range(12)]}]}).encode()
        self.results: list[tuple[float, int, str | None]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        while not self._stop.is_set():
            # The time the request was sent: one sent after every worker swapped must get the new version.
            sent = time.monotonic()
            try:
                status, headers, body = call(self.url, self.body, timeout=10)
                version = json.loads(body).get("version") if status == 200 else None
                assert status != 200 or headers.get("X-Model-Version") == version
                row = (sent, status, version)
            except Exception as exc:  # connection reset by a killed worker, timeouts
                row = (sent, 0, None)
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.results.append(row)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def since(self, t0: float) -> list[tuple[float, int, str | None]]:
        with self._lock:
            return [r for r in self.results if r[0] >= t0]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        wait_until(predicate, timeout, lambda: f"last answers {self.results[-5:]}")


def load_failures(base: str, name: str) -> float:
    """Bundles of ``name`` that failed to load, summed over the workers."""
    return sample(scrape(base), "seqcast_model_load_failures_total", model=name) or 0.0


def test_publish_new_then_corrupt_versions_under_load(server, publisher):
    base, _ = server
    old = store.read_current(publisher.model_dir, "hot")
    assert old is not None
    with Load(base, "hot") as load:
        load.wait_for(lambda: len(load.results) >= 30)

        new = publisher.publish()
        # both workers poll every 0.5 s and load in well under a second
        wait_until(lambda: served_by_every_worker(base, "hot", new, old), 10, f"{new} in every worker")
        t_after = time.monotonic()
        load.wait_for(lambda: len(load.since(t_after)) >= 30)
        answers = load.since(0)
        assert all(s == 200 for _, s, _ in answers), Counter(s for _, s, _ in answers)
        assert {v for _, _, v in answers} == {old, new}
        assert {v for _, _, v in load.since(t_after)} == {new}  # after the swap: only the new one

        # Each bad version must be tried and refused by every worker before the next one is
        # published (a worker that polls after both only ever sees the second). The load
        # failures counter is summed over the workers, and a worker tries a version once.
        assert load_failures(base, "hot") == 0
        t_bad = time.monotonic()
        # A truncated ONNX file (its sha256 matches, so only loading can find out) ...
        truncated = publisher.publish(publisher.onnx_bytes[: len(publisher.onnx_bytes) // 2])
        wait_until(lambda: load_failures(base, "hot") >= WORKERS, 10, f"every worker refusing {truncated}")
        info = json.loads(call(f"{base}/v1/models/hot")[2])
        assert info["version"] == new and info["current"] == info["failed_version"] == truncated, info
        # onnxruntime's own message (paths, graph internals) stays in the worker's log
        assert info["status"] == "ready" and info["error"].startswith("InvalidProtobuf: onnxruntime"), info
        # ... and a manifest that does not match its graph (3 features; the graph takes 1).
        spec = publisher.manifest.spec.model_copy(update={"features": ["value", "a", "b"]})
        mismatched = publisher.publish(spec=spec)
        wait_until(
            lambda: load_failures(base, "hot") >= 2 * WORKERS, 10, f"every worker refusing {mismatched}"
        )
        t_refused = time.monotonic()
        load.wait_for(lambda: len(load.since(t_refused)) >= 20)  # and still serving after that
        bad_window = load.since(t_bad)
        assert all(s == 200 and v == new for _, s, v in bad_window), Counter((s, v) for _, s, v in bad_window)
    assert load.errors == []
    assert load_failures(base, "hot") == 2 * WORKERS  # each bad version once per worker, not per request

    status, _, body = call(f"{base}/readyz")
    assert status == 200, body  # still serving the last good version
    assert json.loads(body)["failed"] == {"hot": {"version": mismatched, "error": ANY}}
    info = json.loads(call(f"{base}/v1/models/hot")[2])
    assert info["version"] == new and info["current"] == mismatched
    assert info["failed_version"] == mismatched and "features" in info["error"]


def test_killed_worker_is_replaced(server, publisher):
    base, proc = server
    workers = children(proc.pid)
    assert len(workers) == WORKERS
    with Load(base, "hot") as load:
        load.wait_for(lambda: len(load.results) >= 30)
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        load.wait_for(
            lambda: len(children(proc.pid)) == WORKERS and victim not in children(proc.pid), timeout=30
        )
        t_replaced = time.monotonic()  # the victim is reaped: no request sent from now on can reach it
        load.wait_for(lambda: len(load.since(t_replaced)) >= 30, timeout=30)
    failed = [r for r in load.results if r[1] != 200]
    # Only requests in flight on the killed worker can fail: at most one per client thread.
    print(
        f"\nkill -9 of one worker under {CLIENTS} clients: {len(failed)} failed of {len(load.results)}"
        f" requests; errors: {load.errors}"
    )
    assert len(failed) <= CLIENTS
    assert all(s == 200 for _, s, _ in load.since(t_replaced))


def test_retrain_job_promotion_is_picked_up_by_the_running_service(server, publisher):
    """The retraining job promotes a better challenger; the running service serves it, no restart."""
    from conftest import DEMO_CONFIG

    from training.cli import main

    base, proc = server
    workers = children(proc.pid)
    before: str = json.loads(call(f"{base}/v1/models/hot")[2])["version"]
    code = main(
        [
            "retrain",
            "--config",
            str(DEMO_CONFIG),
            "--model-dir",
            str(publisher.model_dir),
            "--name",
            "hot",
            "-q",
            "--set",
            'retrain.config_from="job"',
            "--set",
            "window.length=12",
            "--set",
            "window.horizon=4",
            "--set",
            "split.test=12",
            "--set",
            "split.val=12",
            "--set",
            "train.epochs=30",
            "--set",
            "machine.progress=false",
        ]
    )
    assert code == 0
    promoted = store.read_current(publisher.model_dir, "hot")
    assert promoted is not None and promoted != before, (
        "the 30-epoch challenger should beat the 2-epoch champion"
    )
    # every worker swaps within a few polls
    wait_until(lambda: served_by_every_worker(base, "hot", promoted, before), 10, f"{promoted} everywhere")
    answers = [
        call(f"{base}/v1/models/hot/forecast", {"series": [{"values": list(range(12))}]}) for _ in range(10)
    ]
    assert [(status, headers["X-Model-Version"]) for status, headers, _ in answers] == [(200, promoted)] * 10
    assert children(proc.pid) == workers  # not restarted
