"""End to end: the real gunicorn (repo config, 2 workers) on a free 127.0.0.1 port, forecasting over HTTP.

The answer must equal the PyTorch model's output; metrics must add up across
workers; SIGTERM must stop the server cleanly within the graceful timeout.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gunicorn_server import call, gunicorn, sample, scrape, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(tiny_bundle_dir: Any, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    log = tmp_path / "gunicorn.log"
    with gunicorn(tiny_bundle_dir[0], log, SEQCAST_MAX_BODY_BYTES="65536") as (base, proc):
        yield base, proc, log


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
    # Each worker writes its tallies every SEQCAST_METRICS_FLUSH_SECONDS (1 s): the sum
    # reaches exactly 20 within a few flushes, and never passes it.
    for _ in range(20):
        assert call(f"{base}/healthz")[0] == 200

    def healthz(samples: dict[Any, float]) -> float | None:
        return sample(samples, "seqcast_http_requests_total", method="GET", route="/healthz", status="200")

    def counted() -> dict[Any, float] | None:
        samples = scrape(base)
        return samples if healthz(samples) == 20 else None

    samples = wait_until(counted, 5, lambda: f"20 /healthz in /metrics, not {healthz(scrape(base))}")
    assert sample(samples, "seqcast_model_info", model=name, version=version) == 1

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


def _chunked_post(base: str, path: str, framed: bytes) -> tuple[int, bytes]:
    """POST ``framed``, an already chunk-encoded body, with ``Transfer-Encoding: chunked``."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.sendall(head.encode() + framed)
        except OSError:  # the server may answer (413) and close before the whole body is sent
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def _chunks(body: bytes, size: int = 4096) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def test_chunked_bodies_are_read_whole_and_held_to_the_limit(server: Any, tiny_bundle_dir: Any) -> None:
    """SEQCAST_MAX_BODY_BYTES holds without a Content-Length: a longer body is a 413, not cut at the
    limit and read as if the rest were not there; a malformed chunk is a 400, not a 500."""
    base, _, _ = server
    path = f"/v1/models/{tiny_bundle_dir[1]}/forecast"
    body = json.dumps({"series": [{"values": [float(v) for v in range(100, 130)]}]}).encode()
    status, raw = _chunked_post(base, path, _chunks(body))
    assert status == 200, raw
    assert len(json.loads(raw)["forecasts"][0]["mean"]) == 4
    # valid JSON first, then spaces past the 64 KiB limit: the whole body counts
    status, raw = _chunked_post(base, path, _chunks(body + b" " * 100_000))
    assert status == 413, raw
    assert json.loads(raw)["error"]["code"] == "payload_too_large"
    status, raw = _chunked_post(base, path, b"zz\r\n" + body + b"\r\n0\r\n\r\n")
    assert status == 400, raw
    assert json.loads(raw)["error"]["code"] == "malformed_body"


def test_workers_write_their_last_metric_tallies_when_they_stop(tiny_bundle_dir: Any, tmp_path: Path) -> None:
    """Tallies not yet flushed (the interval is a minute here) are written by gunicorn's worker_exit."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    shared = tmp_path / "metrics"
    with gunicorn(
        tiny_bundle_dir[0], tmp_path / "gunicorn.log", SEQCAST_METRICS_FLUSH_SECONDS="60",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    ) as (base, proc):  # fmt: skip
        for _ in range(10):
            assert call(f"{base}/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(shared))
    text = generate_latest(registry).decode()
    assert 'seqcast_http_requests_total{method="GET",route="/healthz",status="200"} 10.0' in text, text


def test_tritonclient_talks_to_the_v2_api(server: Any, tiny_bundle_dir: Any) -> None:
    """NVIDIA's own client for the Open Inference Protocol, binary and JSON tensors, against gunicorn."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    base, _, _ = server
    _, name, version, torch_model = tiny_bundle_dir
    client = triton.InferenceServerClient(
        base.removeprefix("http://"), connection_timeout=10, network_timeout=10
    )
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(name)
        assert client.get_server_metadata()["name"] == "seqcast"
        meta = client.get_model_metadata(name)
        assert meta["versions"] == [version]
        assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("x", "FP32")]

        x = np.random.default_rng(0).uniform(100, 400, size=(5, 30, 1)).astype(np.float32)
        with torch.no_grad():
            expected = torch_model(torch.from_numpy(np.ascontiguousarray(x[:, -12:]))).numpy()
        for binary in (True, False):
            tensor = triton.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            wanted = [triton.InferRequestedOutput("y", binary_data=binary)]
            result = client.infer(name, [tensor], outputs=wanted)
            y = result.as_numpy("y")
            assert y is not None and y.shape == expected.shape
            np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-3)
            # the prediction intervals, as named outputs: the 80 % range inside the 90 % one
            bounds = ["y_lower_90", "y_lower_80", "y_upper_80", "y_upper_90"]
            asked = [triton.InferRequestedOutput(b, binary_data=binary) for b in bounds]
            got = client.infer(name, [tensor], outputs=asked)
            lo90, lo80, up80, up90 = (got.as_numpy(b) for b in bounds)
            assert lo90 is not None and up90 is not None and lo80 is not None and up80 is not None
            assert np.all(lo90 <= lo80) and np.all(lo80 < y) and np.all(y < up80) and np.all(up80 <= up90)
        # no outputs named: every output the metadata lists, the bounds at 80 and 95 % included
        listed = [o["name"] for o in meta["outputs"]]
        assert listed == ["y", "y_lower_80", "y_upper_80", "y_lower_95", "y_upper_95"]
        every = client.infer(name, [tensor]).get_response()["outputs"]
        assert [o["name"] for o in every] == listed

        bad = triton.InferInput("x", [1, 30, 2], "FP32")  # two features; the model takes one
        bad.set_data_from_numpy(np.ones((1, 30, 2), dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"shape must be \[batch, time, 1\]"):
            client.infer(name, [bad])
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("no-such-model")
    finally:
        client.close()
