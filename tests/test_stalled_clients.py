"""Stalled uploads against the real gunicorn (issue 13, finding 1): a client that sends its headers
and half a body gets a 408 after ``SEQCAST_READ_TIMEOUT``, no worker is killed for it, and a normal
forecast is answered within the read timeout (gthread workers: 16 stalled clients, 2 x 8 threads;
sync workers: one stalled client per worker).

Before: a sync worker read such a body until gunicorn killed it (``SEQCAST_TIMEOUT``), and a gthread
thread read it for ever.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from gunicorn_server import call, gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

READ_TIMEOUT = 2.0
BODY = json.dumps({"series": [{"values": [112.0, 118.0, 132.0, 129.0, 121.0, 135.0] * 4}]}).encode()


def stall(base: str, path: str) -> socket.socket:
    """Open a connection that sends its headers and half its body, then nothing."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    )
    sock.sendall(head.encode() + BODY[: len(BODY) // 2])
    return sock


def answer_of(sock: socket.socket) -> tuple[float, bytes]:
    """(seconds until the server answered and closed, what it sent)."""
    started = time.monotonic()
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return time.monotonic() - started, received


def check(base: str, log: Path, name: str, stalled: int) -> None:
    started = time.monotonic()
    socks = [stall(base, f"/v1/models/{name}/forecast") for _ in range(stalled)]
    time.sleep(0.3)  # every stalled connection is taken by a worker before the normal one
    sent = time.monotonic()
    status, _, raw = call(f"{base}/v1/models/{name}/forecast", BODY, timeout=30)
    waited = time.monotonic() - sent
    assert status == 200, raw
    # within the read timeout (plus slack for a loaded machine), far below the 20 s worker timeout
    assert waited < READ_TIMEOUT + 2.0, f"a normal forecast waited {waited:.2f} s behind {stalled} stalled"
    for sock in socks:
        _, received = answer_of(sock)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received[:200]
        assert json.loads(body)["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 2 * READ_TIMEOUT + 3.0
    text = log.read_text()
    assert "WORKER TIMEOUT" not in text and "Traceback" not in text, text
    assert status == 200 and call(f"{base}/healthz")[0] == 200


def test_sixteen_stalled_uploads_do_not_stop_gthread_workers(tiny_bundle_dir: Any, tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    settings = {"SEQCAST_THREADS": "8", "SEQCAST_READ_TIMEOUT": str(READ_TIMEOUT), "SEQCAST_TIMEOUT": "20"}
    with gunicorn(tiny_bundle_dir.model_dir, log, **settings) as (base, _):
        check(base, log, tiny_bundle_dir.name, stalled=16)


def test_a_stalled_upload_gets_a_408_from_a_sync_worker_which_lives_on(
    tiny_bundle_dir: Any, tmp_path: Path
) -> None:
    log = tmp_path / "gunicorn.log"
    settings = {"SEQCAST_READ_TIMEOUT": str(READ_TIMEOUT), "SEQCAST_TIMEOUT": "20"}
    with gunicorn(tiny_bundle_dir.model_dir, log, **settings) as (base, _):
        check(base, log, tiny_bundle_dir.name, stalled=1)
