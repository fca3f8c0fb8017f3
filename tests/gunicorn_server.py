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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).parent / "gunicorn"


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


@contextmanager
def gunicorn(
    model_dir: Path, log: Path, workers: int = 2, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start, wait until ready with every worker booted, yield (base URL, process); stop it after.

    ``settings`` are extra ``SEQCAST_*`` variables, e.g. ``SEQCAST_POLL_SECONDS="0.5"``.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQCAST_", "PROMETHEUS_"))}
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
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            # Ready, and every worker booted: one may answer while another still imports.
            booted = log.read_text().count("loaded and warmed up") >= workers
            try:
                if booted and call(f"{base}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "not ready after 30 s:\n" + log.read_text()
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:  # the test did not stop it: SIGTERM, then make sure
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
