"""The Compose stack's reverse proxy (deploy/nginx.conf.template, through deploy/proxy-entrypoint.sh)
in front of the real gunicorn, on 127.0.0.1: stalled clients, limits, JSON refusals, request ids,
and the client address the api throttles by (issue 13, "a real reverse proxy").

Needs nginx (Debian's ``nginx-light``; ``.ci/run`` installs it): skipped, and said so, without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gunicorn_server import call, free_port, gunicorn, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx-light)"
    ),
]

REPO = Path(__file__).resolve().parents[1]
STALL_SECONDS = 2


@pytest.fixture
def proxied(tiny_bundle_dir: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(proxy URL, gunicorn log): one sync worker (one throttle count) behind nginx, which allows 64 KiB
    bodies."""
    log = tmp_path / "gunicorn.log"
    settings = {"SEQCAST_PROXY_HOPS": "1", "SEQCAST_API_KEYS": "right-key", "SEQCAST_AUTH_FAILURES": "2"}
    with gunicorn(tiny_bundle_dir.model_dir, log, workers=1, **settings) as (api, _):
        port = free_port()
        env = {
            **os.environ,
            "SEQCAST_PROXY_TEMPLATE": str(REPO / "deploy" / "nginx.conf.template"),
            "SEQCAST_PROXY_PREFIX": str(tmp_path / "nginx"),
            "SEQCAST_UPSTREAM": api.removeprefix("http://"),
            "SEQCAST_PROXY_LISTEN": f"127.0.0.1:{port}",
            "SEQCAST_PROXY_MAX_BODY": "64k",
            "SEQCAST_PROXY_TIMEOUT": str(STALL_SECONDS),
        }
        out = tmp_path / "nginx.log"
        with open(out, "wb") as sink:
            entrypoint = str(REPO / "deploy" / "proxy-entrypoint.sh")
            proc = subprocess.Popen(
                [entrypoint], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        base = f"http://127.0.0.1:{port}"
        try:

            def up() -> bool:
                assert proc.poll() is None, out.read_text()
                try:
                    return call(f"{base}/healthz", timeout=2)[0] == 200
                except OSError:
                    return False

            wait_until(up, 15, lambda: "nginx not up:\n" + out.read_text())
            yield base, log
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def raw_request(base: str, data: bytes, timeout: float = 10) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_sixteen_stalled_clients_through_the_proxy_leave_forecasts_under_a_second(
    proxied: Any, tiny_bundle_dir: Any
) -> None:
    base, log = proxied
    script = REPO / "scripts" / "stalled_clients.py"
    args = [base, "--model", tiny_bundle_dir.name, "--clients", "16", "--under", "1.0", "--key", "right-key"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WORKER TIMEOUT" not in log.read_text()


def test_the_proxy_answers_its_refusals_as_json_and_passes_the_request_id(
    proxied: Any, tiny_bundle_dir: Any
) -> None:
    base, log = proxied
    name = tiny_bundle_dir.name
    path = f"/v1/models/{name}/forecast"
    ok = {"series": [{"values": [112.0, 118.0, 132.0, 129.0, 121.0, 135.0] * 2}]}
    status, headers, raw = call(f"{base}{path}", json.dumps(ok).encode(), timeout=10)
    assert status == 401 and json.loads(raw)["error"]["code"] == "unauthorized"  # the api's own answer

    # a request id given by the client reaches the api's log line and comes back
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: right-key\r\n"
    body = json.dumps(ok).encode()
    answer = raw_request(base, (head + f"X-Request-Id: trace-7\r\nContent-Length: {len(body)}\r\n"
                                "Connection: close\r\n\r\n").encode() + body)  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 200") and b"X-Request-Id: trace-7" in answer, answer[:300]
    assert '"request_id":"trace-7"' in log.read_text()

    big = b'{"series": [{"values": [' + b"1.0," * 40_000 + b"1.0]}]}"
    status, headers, raw = call(f"{base}{path}", big, timeout=10)
    assert status == 413 and json.loads(raw)["error"]["code"] == "payload_too_large"
    assert headers["Content-Type"] == "application/json"
    status, _, raw = call(f"{base}/v2/models/{name}/infer", big, timeout=10)
    assert status == 413 and isinstance(json.loads(raw)["error"], str)  # the V2 shape

    garbage = raw_request(base, b"NONSENSE\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400") and b'"code":"bad_request"' in garbage, garbage[:300]

    started = time.monotonic()
    stalled = raw_request(base, (head + "Content-Length: 1000\r\n\r\n").encode() + b'{"series"', timeout=30)
    # nginx closes a connection whose body stalls (it answers nothing: the client stopped talking)
    assert time.monotonic() - started < STALL_SECONDS + 3 and stalled == b"", stalled[:300]


def test_clients_cannot_dodge_the_throttle_by_forging_x_forwarded_for(
    proxied: Any, tiny_bundle_dir: Any
) -> None:
    """The api counts wrong keys per client address, which behind the proxy is the one nginx saw
    (the last hop of X-Forwarded-For, SEQCAST_PROXY_HOPS=1), not whatever a client wrote there."""
    base, _ = proxied
    path = f"/v1/models/{tiny_bundle_dir.name}/forecast"
    statuses = []
    for forged in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: guess\r\nX-Forwarded-For: {forged}\r\n"
        answer = raw_request(base, (head + "Content-Length: 2\r\nConnection: close\r\n\r\n{}").encode())
        statuses.append(int(answer[9:12]))
    assert statuses == [403, 403, 429]
