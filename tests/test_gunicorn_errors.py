"""What gunicorn itself refuses before the app runs is answered as JSON, not HTML (issue 13,
finding 8): a malformed request line, a request line or headers beyond its limits."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from gunicorn_server import gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def send(base: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_gunicorns_own_errors_are_json(tiny_bundle_dir: Any, tmp_path: Path) -> None:
    with gunicorn(tiny_bundle_dir.model_dir, tmp_path / "gunicorn.log", workers=1) as (base, _):
        cases = [
            (b"NONSENSE\r\n\r\n", 400),
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: y\r\n" * 200 + b"\r\n", 431),
        ]
        for request, expected in cases:
            status, headers, body = send(base, request)
            assert status == expected, body[:200]
            assert headers["Content-Type"] == "application/json"
            error = json.loads(body)["error"]
            assert error["code"] and error["message"] and error["details"] == []
