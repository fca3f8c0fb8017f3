"""KServe V2 / Open Inference Protocol routes, in-process with stand-in predictors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient
from service_stubs import settings_for, standard_models, stub_loader

from service.app import create_app
from service.schemas_v2 import InferResponse, ModelMetadata, ServerMetadata


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v2-models")
    standard_models(path)
    return path


@pytest.fixture
def client(model_dir: Path) -> FlaskClient:
    return create_app(settings_for(model_dir, max_series=8), loader=stub_loader).test_client()


def tensor(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"name": "x", "shape": list(x.shape), "datatype": "FP32", **extra}


def test_server_metadata_and_health(client: FlaskClient) -> None:
    meta = ServerMetadata.model_validate(client.get("/v2").get_json())
    assert meta.name == "seqcast" and "binary_tensor_data" in meta.extensions
    # The package's own version, also where it is copied rather than installed (the service image).
    from importlib.metadata import version

    assert meta.version == version("seqcast") != "unknown"
    assert client.get("/v2/health/live").get_json() == {"live": True}
    r = client.get("/v2/health/ready")  # 'broken' never loads: false is a 400 in this protocol
    assert r.status_code == 400 and r.get_json() == {"ready": False}


def test_model_metadata_and_readiness(client: FlaskClient) -> None:
    meta = ModelMetadata.model_validate(client.get("/v2/models/multi").get_json())
    assert meta.versions == ["v1"] and meta.platform == "onnxruntime_onnx"
    assert meta.inputs[0].model_dump() == {"name": "x", "datatype": "FP32", "shape": [-1, -1, 3]}
    assert meta.outputs[0].model_dump() == {"name": "y", "datatype": "FP32", "shape": [-1, 2, 2]}
    assert client.get("/v2/models/multi/versions/v1").status_code == 200
    assert client.get("/v2/models/uni/ready").get_json() == {"name": "uni", "ready": True}
    assert client.get("/v2/models/uni/versions/v1/ready").status_code == 200
    assert client.get("/v2/models/broken/ready").status_code == 400
    r = client.get("/v2/models/nope")
    assert r.status_code == 404 and isinstance(r.get_json()["error"], str)
    assert client.get("/v2/models/uni/versions/v9").status_code == 404


def test_infer_json_flat_and_nested(client: FlaskClient) -> None:
    x = np.arange(2 * 8, dtype=np.float32).reshape(2, 8, 1)  # longer than the window (6): tail used
    for data in (x.ravel().tolist(), x.tolist()):
        r = client.post("/v2/models/uni/infer", json={"id": "r1", "inputs": [tensor(x, data=data)]})
        assert r.status_code == 200, r.data
        body = InferResponse.model_validate(r.get_json())
        assert body.model_name == "uni" and body.model_version == "v1" and body.id == "r1"
        (out,) = body.outputs
        assert out.name == "y" and out.datatype == "FP32" and out.shape == [2, 3, 1]
        assert out.data == [8.0, 9.0, 10.0, 16.0, 17.0, 18.0]  # stub: last value + step
    assert r.headers["X-Model-Version"] == "v1"


def test_infer_binary_tensor_extension_both_ways(client: FlaskClient) -> None:
    x = np.random.default_rng(0).normal(size=(3, 4, 3)).astype(np.float32)
    header = orjson.dumps(
        {
            "inputs": [tensor(x, parameters={"binary_data_size": x.nbytes})],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    r = client.post(
        "/v2/models/multi/infer",
        data=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},  # tritonclient sends no Content-Type
    )
    assert r.status_code == 200, r.data
    split = int(r.headers["Inference-Header-Content-Length"])
    meta = orjson.loads(r.data[:split])
    (out,) = meta["outputs"]
    assert out["shape"] == [3, 2, 2] and out["parameters"]["binary_data_size"] == 3 * 2 * 2 * 4
    y = np.frombuffer(r.data[split:], dtype="<f4").reshape(out["shape"])
    expected = x[:, -1:, :2] + np.array([1, 2], dtype=np.float32)[None, :, None]
    np.testing.assert_allclose(y, expected, rtol=1e-6)


X1 = {"name": "x", "shape": [1, 6, 1], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
BAD: list[tuple[str, str, Any, dict[str, str], int]] = [
    ("malformed", "uni", b'{"inputs": [', {}, 400),
    ("no-inputs", "uni", {"inputs": []}, {}, 400),
    ("wrong-name", "uni", {"inputs": [{**X1, "name": "input"}]}, {}, 400),
    ("two-inputs", "uni", {"inputs": [X1, X1]}, {}, 400),
    ("fp64", "uni", {"inputs": [{**X1, "datatype": "FP64"}]}, {}, 400),
    ("rank-2", "uni", {"inputs": [{**X1, "shape": [1, 6]}]}, {}, 400),
    ("feature-count", "multi", {"inputs": [{**X1, "shape": [1, 2, 3]}]}, {}, 400),
    ("too-short", "uni", {"inputs": [{**X1, "shape": [1, 3, 1], "data": [1, 2, 3]}]}, {}, 400),
    ("size-mismatch", "uni", {"inputs": [{**X1, "data": [1, 2, 3]}]}, {}, 400),
    ("string-data", "uni", {"inputs": [{**X1, "data": ["1", 2, 3, 4, 5, 6]}]}, {}, 400),
    ("nan-data", "uni", b'{"inputs": [{"name": "x", "shape": [1, 6, 1], "datatype": "FP32", '
                        b'"data": [1, 2, NaN, 4, 5, 6]}]}', {}, 400),
    ("no-data", "uni", {"inputs": [{k: v for k, v in X1.items() if k != "data"}]}, {}, 400),
    ("batch-over-limit", "uni", {"inputs": [{**X1, "shape": [9, 6, 1], "data": [1] * 54}]}, {}, 400),
    ("unknown-output", "uni", {"inputs": [X1], "outputs": [{"name": "z"}]}, {}, 400),
    ("bad-header-length", "uni", {"inputs": [X1]}, {"Inference-Header-Content-Length": "99999"}, 400),
    ("non-ascii-header-length", "uni", {"inputs": [X1]}, {"Inference-Header-Content-Length": "²"}, 400),
    ("binary-size-mismatch", "uni", {"inputs": [{**X1, "data": None, "parameters": {"binary_data_size": 3}}]},
     {}, 400),
    ("text-plain", "uni", {"inputs": [X1]}, {"Content-Type": "text/plain"}, 415),
    ("unknown-model", "nope", {"inputs": [X1]}, {}, 404),
    ("failed-model", "broken", {"inputs": [X1]}, {}, 503),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "body", "headers", "status"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_infer_bad_input(
    client: FlaskClient, model: str, body: Any, headers: dict[str, str], status: int
) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    r = client.post(
        f"/v2/models/{model}/infer", data=data, headers={"Content-Type": "application/json", **headers}
    )
    assert r.status_code == status, r.data
    payload = r.get_json()
    assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"]
