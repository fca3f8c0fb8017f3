"""End to end: the real gunicorn (repo config, 2 workers) on a free 127.0.0.1 port, forecasting over HTTP.

The answer must equal the PyTorch model's output; metrics must add up across
workers; SIGTERM must stop the server cleanly within the graceful timeout.
"""

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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

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


@pytest.fixture
def server(tiny_bundle_dir: Any, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    model_dir = tiny_bundle_dir[0]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQCAST_", "PROMETHEUS_"))}
    env |= {
        "SEQCAST_MODEL_DIR": str(model_dir),
        "SEQCAST_BIND": f"127.0.0.1:{port}",
        "SEQCAST_WORKERS": "2",
        "SEQCAST_THREADS": "1",
        "SEQCAST_TIMEOUT": "20",
        "SEQCAST_GRACEFUL_TIMEOUT": "5",
        "SEQCAST_MAX_BODY_BYTES": "65536",
    }
    log = tmp_path / "gunicorn.log"
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
            # Ready, and both workers booted: one may answer while the other still imports.
            booted = log.read_text().count("loaded and warmed up") == 2
            try:
                if booted and call(f"{base}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "not ready after 30 s:\n" + log.read_text()
            time.sleep(0.1)
        yield base, proc, log
    finally:
        if proc.poll() is None:  # the test failed before stopping it: do not leave it behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_gunicorn_serves_the_pytorch_answer_and_stops_cleanly(server: Any, tiny_bundle_dir: Any) -> None:
    base, proc, log = server
    _, name, version, torch_model = tiny_bundle_dir
    values = np.loadtxt(REPO / "data" / "airline.csv", delimiter=",", skiprows=1, usecols=1, dtype=np.float32)
    x = np.stack([values[i : i + 30] for i in (0, 50, 100)])[..., None]  # (3, 30, 1): longer than the window
    body = {"series": [{"id": f"s{i}", "values": row[:, 0].tolist(), "start": "1949-01-01"} for i, row in
                       enumerate(x)], "horizon": 4}  # fmt: skip
    status, headers, raw = call(f"{base}/v1/models/{name}/forecast", body)
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["version"] == version == headers["X-Model-Version"]
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(np.ascontiguousarray(x[:, -12:]))).numpy()[..., 0]
    got = np.array([f["mean"] for f in answer["forecasts"]], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert answer["forecasts"][0]["timestamps"][0] == "1951-07-01"  # 30 months from 1949-01

    # Bad input over the wire: JSON errors, not 5xx.
    assert call(f"{base}/v1/models/{name}/forecast", b"{")[0] == 400
    assert call(f"{base}/v1/models/{name}/forecast", {"series": [{"values": [1.5] * 30000}]})[0] == 413
    assert call(f"{base}/v1/models/{name}/forecast", {"series": [{"values": [1, 2]}]})[0] == 422

    # V2 infer agrees with /v1.
    v2 = {"inputs": [{"name": "x", "shape": [3, 30, 1], "datatype": "FP32", "data": x.ravel().tolist()}]}
    status, _, raw = call(f"{base}/v2/models/{name}/infer", v2)
    assert status == 200, raw
    y = np.array(json.loads(raw)["outputs"][0]["data"], dtype=np.float32).reshape(3, 4, 1)[..., 0]
    np.testing.assert_allclose(y, got, rtol=1e-6)

    # Metrics are summed over both workers (prometheus multiprocess mode set up by the config).
    for _ in range(20):
        assert call(f"{base}/healthz")[0] == 200
    text = call(f"{base}/metrics")[2].decode()
    line = next(
        li for li in text.splitlines() if li.startswith("seqcast_http_requests_total") and '"/healthz"' in li
    )
    assert line.endswith(" 20.0"), line
    assert f'seqcast_model_info{{model="{name}",version="{version}"}} 1.0' in text

    # Sessions live in the workers only: the master never even loads onnxruntime.
    assert "onnxruntime" not in Path(f"/proc/{proc.pid}/maps").read_text()
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(workers) == 2
    maps = {w: Path(f"/proc/{w}/maps").read_text() for w in workers}
    assert all("onnxruntime" in m for m in maps.values()), log.read_text()

    # Graceful stop: SIGTERM to the master, which waits for its workers and exits 0.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("loaded and warmed up") == 2, text  # once per worker, never in the master
