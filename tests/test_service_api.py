"""The HTTP layer in-process (Flask test client) with stand-in predictors: answers and every bad input."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel
from service_stubs import (
    StubPredictor,
    make_manifest,
    publish_stub,
    settings_for,
    standard_models,
    stub_loader,
)

from service.app import create_app
from service.bundle import store
from service.schemas import ErrorResponse, ForecastRequest, ForecastResponse, ModelInfo, ModelList

SIX = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stub-models")
    standard_models(path)
    return path


@pytest.fixture
def app(model_dir: Path) -> Flask:
    return create_app(settings_for(model_dir, max_series=4, max_body_bytes=4096), loader=stub_loader)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, model: str, body: Any, **kw: Any) -> Any:
    return client.post(f"/v1/models/{model}/forecast", json=body, **kw)


def error_of(response: Any) -> dict[str, Any]:
    payload = response.get_json()
    ErrorResponse.model_validate(payload)  # one shape for every error
    return payload["error"]


# -- answers -------------------------------------------------------------------


def test_forecast_one_series_uses_the_tail_and_dates_the_steps(client: FlaskClient) -> None:
    r = post(client, "uni", {"series": [{"id": "a", "values": [9, 9, *SIX], "start": "1949-01-01"}]})
    assert r.status_code == 200, r.data
    body = r.get_json()
    ForecastResponse.model_validate(body)
    assert r.headers["X-Model-Version"] == body["version"] == "v1"
    assert body["model"] == "uni" and body["horizon"] == 3 and body["targets"] == ["value"]
    (f,) = body["forecasts"]
    assert f["id"] == "a"
    assert f["mean"] == [7.0, 8.0, 9.0]  # stub: last value + step
    # 8 monthly values from 1949-01 end in 1949-08; the forecast continues from there.
    assert f["timestamps"] == ["1949-09-01", "1949-10-01", "1949-11-01"]


@pytest.mark.parametrize("n_series", [1, 400])
def test_values_at_the_edges_of_float32_are_served_exactly(model_dir: Path, n_series: int) -> None:
    settings = settings_for(model_dir, max_series=n_series, max_body_bytes=1 << 20)
    client = create_app(settings, loader=stub_loader).test_client()
    edge = np.finfo(np.float32).max
    values = [float(edge), -float(edge), 1e-45, -0.0, 3, float(edge)]  # magnitudes sum past float32
    r = post(client, "uni", {"series": [{"values": values}] * n_series})
    assert r.status_code == 200, r.data
    firsts = np.array([f["mean"][0] for f in r.get_json()["forecasts"]], dtype=np.float32)
    assert firsts.shape == (n_series,) and (firsts == edge).all()  # stub: last value + 1 (lost in float32)


# A large batch is checked by one type scan and one numpy call while it is clean; one bad
# cell anywhere must still be found and named.
LARGE_BAD_CELLS = [
    ("bool", True, (422, ["series", 300, "values", 2])),
    ("false", False, (422, ["series", 300, "values", 2])),
    ("string", "3", (422, ["series", 300, "values", 2])),
    ("null", None, (422, ["series", 300, "values", 2])),
    ("object", {"v": 1}, (422, ["series", 300, "values", 2])),
    ("beyond-float32", 1e39, (422, ["series", 300, "values", 2])),
    ("list-in-a-number-row", [3.0, 4.0], (422, ["series", 300, "values"])),
    ("int-beyond-64-bits", 2**70, (200, None)),  # a legal number, beyond float32 only past 3.4e38
    ("one-feature-row", [3.0], (422, ["series", 300, "values"])),  # a row among plain numbers
]


@pytest.mark.parametrize(
    ("cell", "expected"), [c[1:] for c in LARGE_BAD_CELLS], ids=[c[0] for c in LARGE_BAD_CELLS]
)
def test_one_bad_cell_in_a_large_batch_is_named(model_dir: Path, cell: Any, expected: Any) -> None:
    settings = settings_for(model_dir, max_series=500, max_body_bytes=1 << 22)
    client = create_app(settings, loader=stub_loader).test_client()
    series = [{"values": [1.5, 2, 3.25, 4, 5, 6.5]} for _ in range(500)]  # 3,000 values
    series[300]["values"][2] = cell
    r = post(client, "uni", {"series": series})
    status, loc = expected
    assert r.status_code == status, r.data
    if loc is not None:
        assert error_of(r)["details"][0]["loc"] == loc
    else:
        assert r.get_json()["forecasts"][0]["mean"] == [7.5, 8.5, 9.5]


def test_a_long_string_in_a_large_batch_costs_no_memory(model_dir: Path) -> None:
    """The type scan refuses the string before numpy sees it (dtype inference would size a
    text array of 3,000 cells by the longest string: 240 MB for this 20 KB cell)."""
    import tracemalloc

    settings = settings_for(model_dir, max_series=500, max_body_bytes=1 << 22)
    client = create_app(settings, loader=stub_loader).test_client()
    series = [{"values": [1.5, 2, 3.25, 4, 5, 6.5]} for _ in range(500)]
    series[300]["values"][2] = "a" * 20_000
    tracemalloc.start()
    try:
        r = post(client, "uni", {"series": series})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 422 and error_of(r)["details"][0]["loc"] == ["series", 300, "values", 2]
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_bool_in_a_large_utf16_or_utf32_body_is_refused(model_dir: Path, encoding: str) -> None:
    settings = settings_for(model_dir, max_series=500, max_body_bytes=1 << 22)
    client = create_app(settings, loader=stub_loader).test_client()
    series = [{"values": [1.5, 2, 3.25, 4, 5, 6.5]} for _ in range(500)]
    series[300]["values"][5] = True
    r = client.post(
        "/v1/models/uni/forecast", data=json.dumps({"series": series}).encode(encoding), content_type=JSON
    )
    assert r.status_code == 422, r.data[:200]
    assert error_of(r)["details"][0]["loc"] == ["series", 300, "values", 5]


def test_a_large_batch_with_a_nan_or_an_int_only_batch(model_dir: Path) -> None:
    settings = settings_for(model_dir, max_series=500, max_body_bytes=1 << 22)
    client = create_app(settings, loader=stub_loader).test_client()
    rows = ", ".join('{"values": [1, 2, 3, 4, 5, 6]}' for _ in range(499))
    r = client.post(
        "/v1/models/uni/forecast",
        data=f'{{"series": [{rows}, {{"values": [1, 2, NaN, 4, 5, 6]}}]}}',
        content_type="application/json",
    )
    assert r.status_code == 422 and error_of(r)["details"][0]["loc"] == ["series", 499, "values", 2]
    ints = post(client, "uni", {"series": [{"values": [1, 2, 3, 4, 5, 6]}] * 500})
    floats = post(client, "uni", {"series": [{"values": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}] * 500})
    rows = post(client, "uni", {"series": [{"values": [[v] for v in range(1, 7)]}] * 500})  # 1-feature rows
    assert ints.status_code == floats.status_code == rows.status_code == 200
    assert ints.get_json()["forecasts"] == floats.get_json()["forecasts"] == rows.get_json()["forecasts"]


@pytest.mark.parametrize("bad", [None, True, "x", [1, 2], 1e39])
def test_large_multi_feature_batch_names_a_bad_cell(model_dir: Path, bad: Any) -> None:
    settings = settings_for(model_dir, max_series=500, max_body_bytes=1 << 22)
    client = create_app(settings, loader=stub_loader).test_client()
    series = [{"values": [[1.0, 2, 3], [4, 5, 6], [7, 8, 9], [1, 2, 3]]} for _ in range(300)]  # 3,600 values
    assert post(client, "multi", {"series": series}).status_code == 200
    series[200]["values"][1][2] = bad
    r = post(client, "multi", {"series": series})
    assert r.status_code == 422, r.data
    assert error_of(r)["details"][0]["loc"][:4] == ["series", 200, "values", 1]


def test_many_series_go_in_one_model_call(app: Flask) -> None:
    client = app.test_client()
    series = [{"values": SIX}, {"values": [0, *SIX]}, {"values": [[v] for v in SIX]}]
    r = post(client, "uni", {"series": series, "horizon": 2})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert [f["mean"] for f in body["forecasts"]] == [[7.0, 8.0]] * 3
    assert [f["id"] for f in body["forecasts"]] == [None] * 3
    assert all("timestamps" not in f for f in body["forecasts"])
    predictor = app.extensions["seqcast"].registry.served("uni").predictor
    assert isinstance(predictor, StubPredictor) and predictor.calls == [(3, 6, 1)]


def test_multi_target_model_answers_rows_and_keeps_time_of_day(client: FlaskClient) -> None:
    values = [[1, 10, 0.5], [2, 20, 0.5], [3, 30, 0.5], [4, 40, 0.5]]
    stamps = ["2026-03-01T10:00:00+01:00", "2026-03-01T11:00:00+01:00", "2026-03-01T12:00:00+01:00",
              "2026-03-01T13:00:00+01:00"]  # fmt: skip
    r = post(client, "multi", {"series": [{"values": values, "timestamps": stamps}]})
    assert r.status_code == 200, r.data
    (f,) = r.get_json()["forecasts"]
    assert f["mean"] == [[5.0, 41.0], [6.0, 42.0]]
    assert f["timestamps"] == ["2026-03-01T14:00:00+01:00", "2026-03-01T15:00:00+01:00"]


def test_model_without_frequency_answers_without_timestamps(client: FlaskClient) -> None:
    r = post(client, "nofreq", {"series": [{"values": SIX, "start": "2020-01-01"}]})
    assert r.status_code == 200
    assert "timestamps" not in r.get_json()["forecasts"][0]


def test_nan_from_a_python_client_is_a_422_naming_the_value(client: FlaskClient) -> None:
    body = json.dumps({"series": [{"values": [1, float("nan"), 3, 4, 5, 6]}]})  # writes a bare NaN
    r = client.post("/v1/models/uni/forecast", data=body, content_type="application/json")
    assert r.status_code == 422
    err = error_of(r)
    assert err["details"][0]["loc"] == ["series", 0, "values", 1]
    assert "NaN" in err["message"]


def test_list_and_describe_models(client: FlaskClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    listing = ModelList.model_validate(r.get_json())
    names = [m.name for m in listing.models]
    assert names == ["broken", "multi", "nofreq", "uni"]  # 'staged' has no CURRENT: not served
    r = client.get("/v1/models/multi")
    info = r.get_json()
    spec = info["spec"]
    assert spec["features"] == ["x", "y", "temp"] and spec["targets"] == ["x", "y"]
    assert spec["input_window"]["length"] == 4 and spec["horizon"] == 2 and info["versions"] == ["v1"]
    assert info["status"] == "not_loaded" and info["timestamps_supported"] is True
    assert (spec["ensemble"], spec["network"]["base_lag"], spec["network"]["base_damping"]) == (1, None, None)
    post(client, "multi", {"series": [{"values": [[1, 2, 3]] * 4}]})
    assert client.get("/v1/models/multi").get_json()["status"] == "ready"
    post(client, "broken", {"series": [{"values": SIX}]})
    broken = client.get("/v1/models/broken").get_json()
    assert broken["status"] == "failed" and "cannot parse" in broken["error"]


def test_models_say_how_their_forecast_is_built(tmp_path: Path) -> None:
    manifest = make_manifest("weekly", window=337)
    network = manifest.spec.network.model_copy(update={"base_lag": 336, "base_damping": 0.95})
    spec = manifest.spec.model_copy(update={"ensemble": 3, "network": network})
    publish_stub(tmp_path, manifest.model_copy(update={"spec": spec}))
    client = create_app(settings_for(tmp_path), loader=stub_loader).test_client()
    info = client.get("/v1/models/weekly").get_json()
    assert info["spec"] == spec.model_dump(mode="json")  # the manifest's spec, as it is
    listed = client.get("/v1/models").get_json()["models"][0]
    assert listed["spec"]["network"]["base_damping"] == 0.95


def test_a_model_chosen_by_the_recipe_shows_its_base_and_selection(tmp_path: Path) -> None:
    from service.bundle.manifest import CandidateScore, Selection

    manifest = make_manifest("auto")
    network = manifest.spec.network.model_copy(update={"head": "none", "base": "drift"})
    selection = Selection(
        windows=4,
        chosen="drift",
        score=0.8,
        baseline=0.9,
        candidates=[CandidateScore(name="drift", kind="base", score=0.8)],
    )
    spec = manifest.spec.model_copy(update={"network": network})
    publish_stub(tmp_path, manifest.model_copy(update={"spec": spec, "selection": selection}))
    client = create_app(settings_for(tmp_path), loader=stub_loader).test_client()
    info = client.get("/v1/models/auto").get_json()
    assert info["spec"] == spec.model_dump(mode="json")  # the manifest's, as it is
    assert info["selection"] == selection.model_dump(mode="json")
    assert ModelInfo.model_validate(info).selection == selection
    assert post(client, "auto", one()).status_code == 200


def test_a_model_on_logarithms_refuses_values_that_are_not_positive(tmp_path: Path) -> None:
    manifest = make_manifest("logs")
    network = manifest.spec.network.model_copy(
        update={"head": "none", "base": "mean(drift, log drift)", "log_share": 0.5}
    )
    publish_stub(
        tmp_path, manifest.model_copy(update={"spec": manifest.spec.model_copy(update={"network": network})})
    )
    client = create_app(settings_for(tmp_path), loader=stub_loader).test_client()
    assert post(client, "logs", one()).status_code == 200
    # a zero in the window (the last 6 values): 422 naming the series, for the batch and one by one
    for body in (
        one([1.0, 0.0, 3.0, 4.0, 5.0, 6.0]),
        {"series": [{"values": SIX}, {"values": [9.0, *SIX[:-1], -1.0]}]},
    ):
        r = post(client, "logs", body)
        assert r.status_code == 422, r.data
        (detail,) = error_of(r)["details"]
        assert "must be positive" in detail["msg"] and "log_share 0.5" in detail["msg"]
    bad = r.get_json()["error"]["details"][0]["loc"]
    assert bad[:2] == ["series", 1]
    # an older, non-positive value outside the window is not read: accepted
    assert post(client, "logs", one([-5.0, *SIX])).status_code == 200
    x = np.array([[[1.0], [2.0], [0.0], [4.0], [5.0], [6.0]]], dtype=np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 6, 1], "data": x.ravel().tolist()}
    r = client.post("/v2/models/logs/infer", json={"inputs": [tensor]})
    assert r.status_code == 400 and "must be positive" in r.get_json()["error"]


def test_health_and_readiness(client: FlaskClient, tmp_path: Path) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")  # 'broken' never loads
    assert r.status_code == 503
    err = error_of(r)
    assert err["code"] == "not_ready"
    assert {"loc": ["models", "broken"], "msg": "RuntimeError: cannot parse model.onnx (stub)"} in err[
        "details"
    ]

    empty = create_app(settings_for(tmp_path), loader=stub_loader).test_client()
    assert empty.get("/readyz").status_code == 503  # nothing to serve is not ready
    publish_stub(tmp_path, make_manifest("uni"))
    fresh = create_app(settings_for(tmp_path), loader=stub_loader)
    assert fresh.extensions["seqcast"].registry.served("uni") is None  # nothing loads in the factory
    r = fresh.test_client().get("/readyz")
    assert r.status_code == 200
    assert r.get_json() == {
        "ready": True,
        "models": {"uni": "ready"},
        "served": {"uni": "v1"},
        "wanted": {"uni": "v1"},
        "failed": {},
    }


def test_openapi_is_built_from_the_validating_models(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    assert schemas["ForecastRequest"]["properties"]["series"]["maxItems"] == 4  # this app's limit
    assert schemas["ForecastRequest"]["additionalProperties"] is False
    refs = {m.split("/")[-1] for m in _refs(doc)}
    assert refs <= set(schemas), refs - set(schemas)
    example = doc["paths"]["/v1/models/{name}/forecast"]["post"]["requestBody"]["content"]["application/json"]
    ForecastRequest.model_validate(example["example"])
    assert {"/v1/models", "/v2/models/{name}/infer", "/readyz", "/metrics"} <= set(doc["paths"])


def test_openapi_documents_every_route(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    undocumented = {"/static/<path:filename>", "/docs", "/", "/openapi.json"}
    for rule in app.url_map.iter_rules():
        if rule.rule in undocumented:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <path:file> -> {file}
        assert path in doc["paths"], path
        assert set(m.lower() for m in rule.methods or ()) - {"head", "options"} <= set(doc["paths"][path]), (
            path
        )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_docs_page_is_served_from_the_package_without_a_cdn(client: FlaskClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    html = r.get_data(as_text=True)
    for asset in ("/static/docs.js", "/static/docs.css"):
        assert asset in html
        res = client.get(asset)
        assert res.status_code == 200
        assert "http://" not in res.get_data(as_text=True) and "https://" not in res.get_data(as_text=True)
        res.close()
    assert "http://" not in html and "https://" not in html
    r.close()
    assert client.get("/").status_code == 302


def test_metrics_count_requests_series_and_versions(client: FlaskClient) -> None:
    post(client, "uni", {"series": [{"values": SIX}, {"values": SIX}]})
    post(client, "uni", {"series": []})
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'seqcast_http_requests_total{method="POST",route="/v1/models/<name>/forecast",status="200"} 1.0'
        in text
    )
    assert (
        'seqcast_http_requests_total{method="POST",route="/v1/models/<name>/forecast",status="422"} 1.0'
        in text
    )
    assert 'seqcast_series_total{model="uni"} 2.0' in text
    assert 'seqcast_model_info{model="uni",version="v1"} 1.0' in text


def test_an_unexpected_failure_is_a_json_500_without_internals(model_dir: Path) -> None:
    class Exploding(StubPredictor):
        def predict(self, x: Any) -> Any:
            raise RuntimeError("secret internals")

    app = create_app(settings_for(model_dir), loader=lambda b: Exploding(store.verify_bundle(b)))
    r = post(app.test_client(), "uni", {"series": [{"values": SIX}]})
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal_error" and "secret" not in r.get_data(as_text=True)


# -- bad input: status, stable code and the field at fault ---------------------

JSON = "application/json"
V = ["series", 0, "values"]  # loc of the first series' values


def one(values: Any = SIX, **fields: Any) -> dict[str, Any]:
    """A request with one series."""
    return {"series": [{"values": values, **fields}]}


def months(*m: int, suffix: str = "") -> list[str]:
    return [f"2020-{i:02d}-01{suffix}" for i in m]


def hours(*times: str) -> list[str]:
    return [f"2026-03-01T{t}" for t in times]


INVALID = (422, "invalid_request")
MIXED_ZONES = [*months(1, 2, 3, 4, 5, suffix="T00:00"), "2020-06-01T00:00Z"]
BAD: list[tuple[str, str, Any, str, tuple[int, str], list[Any] | None]] = [
    # (id, model, body: bytes are sent as is, content type, (status, code), loc of the first detail)
    ("not-json", "uni", b'{"series": [', JSON, (400, "malformed_json"), None),
    ("empty-body", "uni", b"", JSON, (400, "malformed_json"), None),
    ("bad-utf8", "uni", b'{"series": "\xff"}', JSON, (400, "malformed_json"), None),
    ("no-content-type", "uni", b'{"series": []}', "", (415, "unsupported_media_type"), None),
    ("text-plain", "uni", b'{"series": []}', "text/plain", (415, "unsupported_media_type"), None),
    ("form", "uni", b"series=1", "application/x-www-form-urlencoded", (415, "unsupported_media_type"), None),
    ("not-an-object", "uni", [1, 2], JSON, INVALID, []),
    ("no-series", "uni", {"horizon": 2}, JSON, INVALID, ["series"]),
    ("typo-field", "uni", {**one(), "horizn": 2}, JSON, INVALID, ["horizn"]),
    ("no-series-items", "uni", {"series": []}, JSON, INVALID, ["series"]),
    ("too-many-series", "uni", {"series": one()["series"] * 5}, JSON, INVALID, ["series"]),
    ("series-not-object", "uni", {"series": [SIX]}, JSON, INVALID, ["series", 0]),
    ("empty-values", "uni", one([]), JSON, INVALID, V),
    ("values-not-list", "uni", one(3), JSON, INVALID, V),
    ("values-null", "uni", one(None), JSON, INVALID, V),
    ("values-object", "uni", one({"0": 1}), JSON, INVALID, V),
    ("no-values", "uni", {"series": [{"id": "a"}]}, JSON, INVALID, V),
    ("string-value", "uni", one([1, 2, "3", 4, 5, 6]), JSON, INVALID, [*V, 2]),
    ("null-value", "uni", one([1, None, 3, 4, 5, 6]), JSON, INVALID, [*V, 1]),
    ("bool-value", "uni", one([1, 2, 3, 4, 5, True]), JSON, INVALID, [*V, 5]),
    ("nan", "uni", b'{"series": [{"values": [1, 2, NaN, 4, 5, 6]}]}', JSON, INVALID, [*V, 2]),
    ("infinity", "uni", b'{"series": [{"values": [1, 2, 3, -Infinity, 5, 6]}]}', JSON, INVALID, [*V, 3]),
    ("beyond-float64", "uni", b'{"series": [{"values": [1e400, 2, 3, 4, 5, 6]}]}', JSON, INVALID, [*V, 0]),
    ("beyond-float32", "uni", one([1, 2, 3, 4, 5, 1e39]), JSON, INVALID, [*V, 5]),
    ("int-beyond-float64", "uni", b'{"series": [{"values": [1, 2, 3, 4, 1' + b"0" * 400 + b', 6]}]}', JSON,
     (400, "malformed_json"), None),  # orjson reads big integers as floats; past float64 it refuses
    ("rows-for-one-feature-too-wide", "uni", one([[1, 2]] * 6), JSON, INVALID, V),
    ("too-short", "uni", {"series": [{"values": SIX}, {"values": [1, 2, 3]}]}, JSON, INVALID,
     ["series", 1, "values"]),
    ("mixed-rows", "uni", one([1, [2], 3, 4, 5, 6]), JSON, INVALID, V),
    ("ragged-rows", "multi", one([[1, 2, 3], [1, 2], [1, 2, 3], [1, 2, 3]]), JSON, INVALID, V),
    ("wrong-feature-count", "multi", one([[1, 2]] * 4), JSON, INVALID, V),
    ("plain-numbers-for-covariates", "multi", one([1, 2, 3, 4]), JSON, INVALID, V),
    ("nested-string", "multi", one([[1, 2, 3]] * 3 + [[1, "x", 3]]), JSON, INVALID, [*V, 3, 1]),
    ("nested-bool", "multi", one([[1, 2, 3]] * 3 + [[1, 2, False]]), JSON, INVALID, [*V, 3, 2]),
    ("list-in-a-row", "multi", one([[1, 2, 3], [1, [2], 3], *[[1, 2, 3]] * 2]), JSON, INVALID, [*V, 1, 1]),
    ("nested-nan", "multi", b'{"series": [{"values": [[1, 2, 3], [1, 2, 3], [NaN, 2, 3], [1, 2, 3]]}]}', JSON,
     INVALID, [*V, 2, 0]),
    ("empty-rows", "multi", one([[]] * 4), JSON, INVALID, V),
    ("rows-too-short-history", "multi", one([[1, 2, 3]] * 3), JSON, INVALID, V),
    ("horizon-too-long", "uni", {**one(), "horizon": 4}, JSON, INVALID, ["horizon"]),
    ("horizon-zero", "uni", {**one(), "horizon": 0}, JSON, INVALID, ["horizon"]),
    ("horizon-string", "uni", {**one(), "horizon": "2"}, JSON, INVALID, ["horizon"]),
    ("levels", "uni", {**one(), "levels": [80, 95]}, JSON, INVALID, ["levels"]),
    ("id-not-string", "uni", one(id=7), JSON, INVALID, ["series", 0, "id"]),
    ("duplicate-id", "uni", {"series": [{"id": "a", "values": SIX}] * 2}, JSON, INVALID, ["series", 1, "id"]),
    ("start-and-timestamps", "uni", one(start="2020-01", timestamps=["x"]), JSON, INVALID, [*V[:2], "start"]),
    ("bad-start", "uni", one(start="yesterday"), JSON, INVALID, ["series", 0, "start"]),
    ("bad-start-no-frequency", "nofreq", one(start="2020-13-01"), JSON, INVALID, ["series", 0, "start"]),
    ("timestamps-count", "uni", one(timestamps=months(1)), JSON, INVALID, ["series", 0, "timestamps"]),
    ("timestamp-unparsable", "uni", one(timestamps=[*months(1, 2), "March", *months(4, 5, 6)]), JSON, INVALID,
     ["series", 0, "timestamps", 2]),
    ("timestamps-decreasing", "uni", one(timestamps=months(6, 5, 4, 3, 2, 1)), JSON, INVALID,
     ["series", 0, "timestamps"]),
    ("timestamps-mixed-zones", "uni", one(timestamps=MIXED_ZONES), JSON, INVALID, [*V[:2], "timestamps"]),
    ("forecast-past-9999", "uni", one(start="9999-07-01"), JSON, INVALID, ["series", 0, "start"]),
    # dates must follow the model's frequency (uni: MS, month starts; multi: h), else a 422 at the first fault
    ("timestamps-missing-month", "uni", one(timestamps=months(1, 2, 3, 5, 6, 7)), JSON, INVALID,
     ["series", 0, "timestamps", 3]),
    ("timestamps-daily-for-monthly", "uni", one(timestamps=[f"2020-01-0{d}" for d in range(1, 7)]), JSON,
     INVALID, ["series", 0, "timestamps", 1]),
    ("timestamps-mid-month", "uni", one(timestamps=[f"2020-{m:02d}-15" for m in range(1, 7)]), JSON, INVALID,
     ["series", 0, "timestamps", 0]),
    ("start-mid-month", "uni", one(start="2020-01-15"), JSON, INVALID, ["series", 0, "start"]),
    ("start-month-end", "uni", one(start="2020-01-31"), JSON, INVALID, ["series", 0, "start"]),
    ("hourly-with-a-gap", "multi", one([[1, 2, 3]] * 4, timestamps=hours("10:00", "11:00", "13:00", "14:00")),
     JSON, INVALID, ["series", 0, "timestamps", 2]),
    ("hourly-shifted", "multi", one([[1, 2, 3]] * 4, timestamps=hours("10:30", "11:30", "12:30", "13:00")),
     JSON, INVALID, ["series", 0, "timestamps", 3]),
    ("unknown-model", "nope", one(), JSON, (404, "model_not_found"), None),
    ("not-a-model-name", "..", one(), JSON, (404, "model_not_found"), None),
    ("staged-without-current", "staged", one(), JSON, (404, "model_not_found"), None),
    ("failed-model", "broken", one(), JSON, (503, "not_ready"), None),
    ("body-too-large", "uni", one([1.5] * 2000), JSON, (413, "payload_too_large"), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "body", "ctype", "expected", "loc"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input(
    client: FlaskClient, model: str, body: Any, ctype: str, expected: tuple[int, str], loc: list[Any] | None
) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post(f"/v1/models/{model}/forecast", data=data, headers=headers)
    assert (r.status_code, error_of(r)["code"]) == expected, r.data
    err = error_of(r)
    assert err["message"]
    if loc is not None:
        assert err["details"] and err["details"][0]["loc"] == loc, err
        assert err["details"][0]["msg"]
        assert err["message"].startswith(_format(loc)), err["message"]


def _format(loc: list[Any]) -> str:
    from service.errors import format_loc

    return format_loc(loc)


def test_every_bad_series_is_reported_at_once(client: FlaskClient) -> None:
    r = post(client, "uni", {"series": [{"values": [1]}, {"values": SIX}, {"values": ["a"] * 6}]})
    err = error_of(r)
    assert [d["loc"] for d in err["details"]] == [["series", 0, "values"], ["series", 2, "values", 0]]
    assert "the model needs at least 6" in err["details"][0]["msg"]
    assert err["message"].endswith("(and 1 more)")


def test_routing_errors_are_json(client: FlaskClient) -> None:
    r = client.get("/v1/models/uni/forecast")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    assert error_of(r)["code"] == "method_not_allowed"
    r = client.get("/no/such/route")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = client.get("/v1/models/nope")
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"


# gunicorn bounds wsgi.input by Content-Length and says so (wsgi.input_terminated); the
# body is then read in one call rather than through werkzeug's LimitedStream.
TERMINATED = {"wsgi.input_terminated": True}


def test_a_server_bounded_body_reads_like_any_other(client: FlaskClient) -> None:
    body = {"series": [{"id": "a", "values": SIX}]}
    plain, direct = post(client, "uni", body), post(client, "uni", body, environ_base=TERMINATED)
    assert direct.status_code == plain.status_code == 200
    assert direct.get_json() == plain.get_json()


def test_a_server_bounded_body_past_the_limit_is_413_before_reading(client: FlaskClient) -> None:
    r = post(client, "uni", one([1.5] * 2000), environ_base=TERMINATED)
    assert r.status_code == 413
    assert error_of(r)["code"] == "payload_too_large" and "4096 bytes" in error_of(r)["message"]


def test_a_body_shorter_than_its_content_length_is_malformed_not_a_hang(client: FlaskClient) -> None:
    data = json.dumps(one()).encode()
    r = client.post(
        "/v1/models/uni/forecast",
        input_stream=io.BytesIO(data[:-5]),  # the client stopped early
        content_type=JSON,
        headers={"Content-Length": str(len(data))},
        environ_base=TERMINATED,
    )
    assert r.status_code == 400 and error_of(r)["code"] == "malformed_json"


def test_a_client_that_resets_mid_body_gets_a_400_not_a_500(client: FlaskClient) -> None:
    class Resetting(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise ConnectionResetError("peer reset")

    for environ in ({}, TERMINATED):  # werkzeug's path and the direct read
        r = client.post(
            "/v1/models/uni/forecast",
            data=b" " * 100,  # declares Content-Length 100; the stream below fails instead
            content_type=JSON,
            environ_overrides={"wsgi.input": Resetting(), **environ},
        )
        assert r.status_code == 400, (environ, r.data)


def test_a_values_type_error_comes_in_the_same_round_as_the_envelopes(client: FlaskClient) -> None:
    r = post(client, "uni", {"series": [{"id": "", "values": SIX}, {"values": "x"}, {"values": []}]})
    assert r.status_code == 422
    locs = [d["loc"] for d in error_of(r)["details"]]
    assert locs == [["series", 0, "id"], ["series", 1, "values"], ["series", 2, "values"]]
    assert error_of(r)["details"][2]["msg"] == "empty: send at least one value"


# -- every answer matches the model the OpenAPI document names for it -------------


def documented_model(doc: dict[str, Any], path: str, method: str, status: int) -> type[BaseModel]:
    from service.openapi import _RESPONSES

    response = doc["paths"][path][method]["responses"][str(status)]
    name = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    return next(m for m in _RESPONSES if m.__name__ == name)


def undocumented_fields(value: Any, data: Any, where: str = "body") -> list[str]:
    """Keys in ``data`` that the validated ``value`` has no field for (validation alone ignores them)."""
    if isinstance(value, BaseModel):
        found = [f"{where}.{k}" for k in data if k not in type(value).model_fields]
        return found + [
            f for k in data if k in type(value).model_fields
            for f in undocumented_fields(getattr(value, k), data[k], f"{where}.{k}")
        ]  # fmt: skip
    if isinstance(value, list):
        return [f for i, (v, d) in enumerate(zip(value, data, strict=True))
                for f in undocumented_fields(v, d, f"{where}[{i}]")]  # fmt: skip
    if isinstance(value, dict):
        return [f for k in data for f in undocumented_fields(value[k], data[k], f"{where}[{k!r}]")]
    return []


# (path in the document, URL, method, JSON body or None, status)
ANSWERS: list[tuple[str, str, str, Any, int]] = [
    ("/v1/models", "/v1/models", "get", None, 200),
    ("/v1/models/{name}", "/v1/models/multi", "get", None, 200),
    ("/v1/models/{name}", "/v1/models/nope", "get", None, 404),
    ("/v1/models/{name}/forecast", "/v1/models/uni/forecast", "post", one(start="2020-01-01", id="a"), 200),
    ("/v1/models/{name}/forecast", "/v1/models/multi/forecast", "post", one([[1, 2, 3]] * 4), 200),
    ("/v1/models/{name}/forecast", "/v1/models/uni/forecast", "post", one([1, "x"]), 422),
    ("/v1/models/{name}/forecast", "/v1/models/uni/forecast", "post", b"{", 400),
    ("/v1/models/{name}/forecast", "/v1/models/uni/forecast", "post", one([1.5] * 2000), 413),
    ("/v1/models/{name}/forecast", "/v1/models/nope/forecast", "post", one(), 404),
    ("/v1/models/{name}/forecast", "/v1/models/broken/forecast", "post", one(), 503),
    ("/v1/models/{name}/reload", "/v1/models/uni/reload", "post", None, 200),
    ("/healthz", "/healthz", "get", None, 200),
    ("/readyz", "/readyz", "get", None, 503),  # 'broken' never loads
    ("/v2", "/v2", "get", None, 200),
    ("/v2/health/live", "/v2/health/live", "get", None, 200),
    ("/v2/health/ready", "/v2/health/ready", "get", None, 400),  # false is a 400 in this protocol
    ("/v2/models/{name}", "/v2/models/multi", "get", None, 200),
    ("/v2/models/{name}", "/v2/models/nope", "get", None, 404),
    ("/v2/models/{name}/versions/{version}", "/v2/models/uni/versions/v1", "get", None, 200),
    ("/v2/models/{name}/ready", "/v2/models/uni/ready", "get", None, 200),
    ("/v2/models/{name}/ready", "/v2/models/broken/ready", "get", None, 400),
    ("/v2/models/{name}/versions/{version}/ready", "/v2/models/uni/versions/v1/ready", "get", None, 200),
    ("/v2/models/{name}/infer", "/v2/models/uni/infer", "post",
     {"id": "r", "inputs": [{"name": "x", "shape": [1, 6, 1], "datatype": "FP32", "data": SIX}]}, 200),
    ("/v2/models/{name}/infer", "/v2/models/uni/infer", "post", {"inputs": []}, 400),
    ("/v2/models/{name}/versions/{version}/infer", "/v2/models/uni/versions/v1/infer", "post",
     {"inputs": [{"name": "x", "shape": [1, 6, 1], "datatype": "FP32", "data": SIX}]}, 200),
]  # fmt: skip


def test_every_answer_is_the_model_the_document_names(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()
    checked: set[str] = set()

    def check(c: FlaskClient, path: str, url: str, method: str, body: Any, status: int) -> dict[str, Any]:
        data = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
        r = c.open(url, method=method.upper(), data=data, content_type=JSON if data is not None else None)
        assert r.status_code == status, (url, r.data)
        payload = r.get_json()
        model = documented_model(doc, path, method, status)
        answer = model.model_validate(payload)
        assert not undocumented_fields(answer, payload), (url, model.__name__, payload)
        checked.add(path)
        return payload

    for case in ANSWERS:
        check(client, *case)
    # /readyz answers 200 once every model is served; here with a failed newer version beside.
    publish_stub(tmp_path, make_manifest("a"))
    ready = create_app(settings_for(tmp_path), loader=stub_loader).test_client()
    assert check(ready, "/readyz", "/readyz", "get", None, 200)["failed"] == {}
    bad = publish_stub(tmp_path, make_manifest("a", version="v2"))
    (bad / "model.onnx").write_bytes(b"truncated")
    assert ready.post("/v1/models/a/reload").status_code == 200
    answer = check(ready, "/readyz", "/readyz", "get", None, 200)
    assert answer["served"] == {"a": "v1"} and answer["failed"]["a"]["version"] == "v2"
    # Every documented JSON route was called (/metrics answers text, the report routes files:
    # tests/test_report_page.py calls them).
    reports = {"/v1/models/{name}/report", "/v1/models/{name}/report/{file}"}
    assert set(doc["paths"]) - checked == {"/metrics", *reports}


class Overflowing(StubPredictor):
    """Answers inf for a series whose last value is past 1e30, as a graph can overflow inside."""

    def predict(self, x: Any) -> Any:
        y = super().predict(x)
        return np.where(x[:, -1:, :1] > 1e30, np.float32(np.inf), y).astype(np.float32)


def test_a_forecast_that_is_not_finite_is_a_422_naming_the_series(model_dir: Path) -> None:
    app = create_app(settings_for(model_dir), loader=lambda b: Overflowing(store.verify_bundle(b).spec))
    client = app.test_client()
    r = post(client, "uni", {"series": [{"values": SIX}, {"values": [*SIX[:5], 3e38]}]})
    assert r.status_code == 422 and error_of(r)["details"][0]["loc"] == ["series", 1, "values"]
    assert "not finite" in error_of(r)["message"]
    infer = {"inputs": [{"name": "x", "shape": [1, 6, 1], "datatype": "FP32", "data": [*SIX[:5], 3e38]}]}
    r = client.post("/v2/models/uni/infer", json=infer)  # JSON cannot carry inf: 400 in V2's shape
    assert r.status_code == 400 and "NaN or infinity" in r.get_json()["error"]
    binary = {**infer, "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    assert client.post("/v2/models/uni/infer", json=binary).status_code == 200  # raw bytes can
