"""The real gunicorn (repo config) on a free 127.0.0.1 port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).parent / "gunicorn"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def call(url: str, body: Any = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_until(condition: Callable[[], T | None], timeout: float, what: str | Callable[[], str]) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what if isinstance(what, str) else what()}")
        time.sleep(0.05)  # the polling interval, not a wait for anything in particular
    return result


Labels = frozenset[tuple[str, str]]


def scrape(base: str) -> dict[tuple[str, Labels], float]:
    """Every sample of ``/metrics`` (summed over the workers): ``{(sample name, labels): value}``."""
    status, _, body = call(f"{base}/metrics")
    assert status == 200, body
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def sample(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    """The value of one sample of a ``scrape``, or None if it is not there."""
    return samples.get((name, frozenset(labels.items())))


def served_by_every_worker(base: str, name: str, version: str, *previous: str) -> bool:
    """Whether every live worker serves ``name`` at ``version`` and none at a ``previous`` one.

    ``seqcast_model_info`` is a ``livemax`` gauge: a worker sets its old version to 0
    and its new one to 1 after the swap, and the scrape shows the maximum over the
    live workers, so an old version reads 1 while any worker still serves it.
    """
    samples = scrape(base)
    info = "seqcast_model_info"
    return sample(samples, info, model=name, version=version) == 1 and all(
        sample(samples, info, model=name, version=v) == 0 for v in previous
    )


@contextmanager
def gunicorn(
    model_dir: Path, log: Path, workers: int = 2, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start, wait until ready with every worker booted, yield (base URL, process); stop it after.

    ``settings`` are extra ``SEQCAST_*`` variables, e.g. ``SEQCAST_POLL_SECONDS="0.5"``.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQCAST_", "PROMETHEUS_"))}
    # The server runs this checkout's code (not another one installed in the venv in editable mode).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env |= {"SEQCAST_MODEL_DIR": str(model_dir), "SEQCAST_BIND": f"127.0.0.1:{port}",
            "SEQCAST_WORKERS": str(workers), "SEQCAST_THREADS": "1", "SEQCAST_TIMEOUT": "20",
            "SEQCAST_GRACEFUL_TIMEOUT": "5", **settings}  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(GUNICORN), "-c", "service/gunicorn.conf.py", "service:create_app()"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            # Ready, and every worker booted: one may answer while another still imports.
            if log.read_text().count("loaded and warmed up") < workers:
                return False
            try:
                return call(f"{base}/readyz", timeout=2)[0] == 200
            except OSError:
                return False  # not listening yet

        wait_until(ready, 30, lambda: "gunicorn not ready:\n" + log.read_text())
        yield base, proc
    finally:
        if proc.poll() is None:  # the test did not stop it: SIGTERM, then make sure
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
