"""SIGTERM answers the connections already queued (issue 13, finding 8): a client that connected
while the only worker was busy gets its forecast, not a connection reset, when the server stops."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from gunicorn_server import gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BODY = json.dumps({"series": [{"values": [112.0, 118.0, 132.0, 129.0, 121.0, 135.0] * 4}]}).encode()


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def head(path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()


def answer(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        return b"reset"
    finally:
        sock.close()
    return received


def test_sigterm_answers_the_connections_waiting_for_the_worker(tiny_bundle_dir: Any, tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    path = f"/v1/models/{tiny_bundle_dir.name}/forecast"
    with gunicorn(tiny_bundle_dir.model_dir, log, workers=1, SEQCAST_READ_TIMEOUT="5") as (base, proc):
        busy = connect(base)  # the only worker reads this body, which arrives in two parts
        busy.sendall(head(path) + BODY[:10])
        time.sleep(0.3)
        queued = [connect(base) for _ in range(3)]  # accepted by the kernel, waiting for the worker
        for sock in queued:
            sock.sendall(head(path) + BODY)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        busy.sendall(BODY[10:])
        answers = [answer(busy)] + [answer(sock) for sock in queued]
        assert proc.wait(timeout=15) == 0
    for got in answers:
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
    assert "answered 3 queued connections" in log.read_text()
