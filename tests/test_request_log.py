"""Request ids and the JSON log line per request (issue 13, "request ids and logs")."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from service_stubs import settings_for, standard_models, stub_loader

from service.app import create_app

SIX = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    standard_models(tmp_path)
    return create_app(settings_for(tmp_path, admin_key="admin-secret"), loader=stub_loader).test_client()


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "seqcast.request"]


def test_a_forecast_logs_one_json_line_with_its_id_model_version_and_series(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = {"series": [{"values": SIX}, {"values": SIX}]}
    r = client.post("/v1/models/uni/forecast", json=body, headers={"X-Request-Id": "trace-42.a:b"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "trace-42.a:b"
    (line,) = lines(caplog)
    assert line["request_id"] == "trace-42.a:b"
    assert (line["method"], line["route"], line["status"]) == ("POST", "/v1/models/<name>/forecast", 200)
    assert (line["model"], line["version"], line["series"]) == ("uni", "v1", 2)
    assert isinstance(line["ms"], float | int) and line["ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


def test_v2_infer_logs_its_batch(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    tensor = {"name": "x", "shape": [3, 6, 1], "datatype": "FP32", "data": SIX * 3}
    r = client.post("/v2/models/uni/infer", json={"inputs": [tensor]})
    assert r.status_code == 200
    (line,) = lines(caplog)
    assert (line["route"], line["model"], line["series"]) == ("/v2/models/<name>/infer", "uni", 3)
    assert (
        re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
        and line["request_id"] == r.headers["X-Request-Id"]
    )


@pytest.mark.parametrize("given", ["two words", "x" * 129, "semi;colon", "<script>", "é"])
def test_an_id_that_is_not_a_plain_token_is_replaced(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    caplog.set_level(logging.INFO)
    r = client.get("/healthz", headers={"X-Request-Id": given})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
    assert lines(caplog)[0]["request_id"] == r.headers["X-Request-Id"]


def test_errors_carry_the_id_and_are_logged_without_a_model(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bad = client.post("/v1/models/uni/forecast", json={"series": [{"values": [1.0]}]})
    unmatched = client.get("/no/such/route")
    assert bad.status_code == 422 and unmatched.status_code == 404
    assert bad.headers["X-Request-Id"] and unmatched.headers["X-Request-Id"]
    first, second = lines(caplog)
    assert (first["status"], first["route"]) == (422, "/v1/models/<name>/forecast") and "model" not in first
    assert (second["status"], second["route"]) == (404, "<unmatched>")


def test_keys_and_bodies_are_never_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/v1/models/uni/reload", headers={"Authorization": "Bearer wrong-secret-123"})
    client.post("/v1/models/uni/reload", headers={"Authorization": "Bearer admin-secret"})
    client.post("/v1/models/uni/forecast", json={"series": [{"id": "private-id-77", "values": SIX}]})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-secret-123" not in text and "admin-secret" not in text and "private-id-77" not in text
    assert [line["status"] for line in lines(caplog)] == [403, 200, 200]


def test_the_request_log_can_be_turned_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    standard_models(tmp_path)
    client = create_app(settings_for(tmp_path, request_log=False), loader=stub_loader).test_client()
    r = client.get("/healthz")
    assert r.headers["X-Request-Id"] and lines(caplog) == []
