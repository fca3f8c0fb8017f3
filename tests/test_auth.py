"""Optional API keys (issue 13, finding 7): scopes, both headers, rotation through a key file,
constant-time matching, throttling of wrong keys per client, and keys kept out of answers."""

from __future__ import annotations

import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr
from service_stubs import settings_for, standard_models, stub_loader

from service import auth
from service.app import create_app
from service.settings import SettingsError, load_settings

SIX = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
FORECAST = {"series": [{"values": SIX}]}
V2_INFER = {"inputs": [{"name": "x", "shape": [1, 6, 1], "datatype": "FP32", "data": SIX}]}


def app_client(tmp_path: Path, **settings: Any) -> FlaskClient:
    standard_models(tmp_path)
    return create_app(settings_for(tmp_path, **settings), loader=stub_loader).test_client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_api_keys_guard_the_model_routes_and_leave_probes_and_docs_open(tmp_path: Path) -> None:
    client = app_client(tmp_path, api_keys="key-one, key-two", admin_key="the-admin")
    missing = client.post("/v1/models/uni/forecast", json=FORECAST)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.get_json()["error"]["code"] == "unauthorized"
    wrong = client.post("/v1/models/uni/forecast", json=FORECAST, headers=bearer("key-three"))
    assert wrong.status_code == 403 and wrong.get_json()["error"]["code"] == "forbidden"
    assert "key-three" not in wrong.get_data(as_text=True)
    assert client.post("/v1/models/uni/forecast", json=FORECAST, headers=bearer("key-one")).status_code == 200
    assert (
        client.post("/v1/models/uni/forecast", json=FORECAST, headers={"X-API-Key": "key-two"}).status_code
        == 200
    )
    assert (
        client.post("/v1/models/uni/forecast", json=FORECAST, headers=bearer("the-admin")).status_code == 200
    )
    for path in ("/v1/models", "/v1/models/uni", "/v2/models/uni", "/v2/models/uni/ready"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"X-API-Key": "key-one"}).status_code == 200, path
    v2 = client.post("/v2/models/uni/infer", json=V2_INFER)
    assert v2.status_code == 401 and "error" in v2.get_json() and isinstance(v2.get_json()["error"], str)
    assert client.post("/v2/models/uni/infer", json=V2_INFER, headers=bearer("key-one")).status_code == 200
    for path in (
        "/healthz",
        "/readyz",
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.json",
        "/docs",
        "/v2",
    ):
        with client.get(path) as r:  # closed: /docs streams a file
            assert r.status_code not in (401, 403), path  # /readyz: 503, for the stub 'broken' model


def test_the_admin_and_metrics_scopes(tmp_path: Path) -> None:
    client = app_client(tmp_path, api_keys="api-key", metrics_key="scraper", admin_key="the-admin")
    assert client.get("/metrics").status_code == 401
    assert (
        client.get("/metrics", headers=bearer("api-key")).status_code == 403
    )  # an API key is not a metrics key
    assert client.get("/metrics", headers=bearer("scraper")).status_code == 200
    assert client.get("/metrics", headers=bearer("the-admin")).status_code == 200
    assert client.post("/v1/models/uni/reload", headers=bearer("api-key")).status_code == 403
    assert client.post("/v1/models/uni/reload", headers={"X-API-Key": "the-admin"}).status_code == 200
    # without a metrics key, /metrics stays open even when API keys are set
    assert app_client(tmp_path / "other", api_keys="api-key").get("/metrics").status_code == 200


def test_a_key_file_rotates_without_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth.KeySet, "RECHECK_SECONDS", 0.0)
    keys = tmp_path / "keys"
    keys.write_text("# clients of team a\nold-key\n")
    client = app_client(tmp_path / "models", api_keys_file=keys)

    def status(key: str) -> int:
        return client.post("/v1/models/uni/forecast", json=FORECAST, headers=bearer(key)).status_code

    assert status("old-key") == 200 and status("new-key") == 403
    keys.write_text("old-key\nnew-key\n")  # step 1: add the new key
    assert status("old-key") == 200 and status("new-key") == 200
    keys.write_text("new-key  # since December\n")  # step 2: clients moved, drop the old one
    os.utime(keys, (time.time() + 5, time.time() + 5))  # a new mtime even on a coarse clock
    assert status("old-key") == 403 and status("new-key") == 200
    keys.write_text("")  # a half-written file: the keys last read stay
    os.utime(keys, (time.time() + 10, time.time() + 10))
    assert status("new-key") == 200


def test_keys_are_compared_against_every_key_without_stopping_at_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = auth.KeySet(SecretStr("a,b,c"), None, "API keys")
    assert keys.matches("a") and len(calls) == 3
    calls.clear()
    assert not keys.matches("zzz") and len(calls) == 3


def test_wrong_keys_are_throttled_per_client(tmp_path: Path) -> None:
    client = app_client(tmp_path, api_keys="right", auth_failures=3, auth_window_seconds=0.5)
    attacker = {"REMOTE_ADDR": "10.0.0.9"}
    neighbour = {"REMOTE_ADDR": "10.0.0.10"}

    def post(key: str, environ: dict[str, str]) -> Any:
        return client.post(
            "/v1/models/uni/forecast", json=FORECAST, headers=bearer(key), environ_base=environ
        )

    assert [post("guess", attacker).status_code for _ in range(3)] == [403, 403, 403]
    blocked = post("right", attacker)  # even the right key, until the window ends
    assert blocked.status_code == 429 and blocked.get_json()["error"]["code"] == "too_many_attempts"
    assert int(blocked.headers["Retry-After"]) >= 1
    assert post("right", neighbour).status_code == 200
    time.sleep(0.6)
    assert post("right", attacker).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(tmp_path: Path) -> None:
    client = app_client(tmp_path, api_keys="right", auth_failures=2, proxy_hops=1)
    proxy = {"REMOTE_ADDR": "127.0.0.1"}

    def post(key: str, forwarded: str) -> int:
        headers = {**bearer(key), "X-Forwarded-For": forwarded}
        return client.post(
            "/v1/models/uni/forecast", json=FORECAST, headers=headers, environ_base=proxy
        ).status_code

    assert [post("guess", "203.0.113.7") for _ in range(3)] == [403, 403, 429]
    assert post("right", "203.0.113.8") == 200  # another client behind the same proxy


@pytest.mark.parametrize(
    ("variable", "content", "reason"),
    [("SEQCAST_API_KEYS_FILE", None, "cannot read"), ("SEQCAST_API_KEYS_FILE", "# nothing\n", "holds no key"),
     ("SEQCAST_ADMIN_KEY_FILE", "", "holds no key")],
)  # fmt: skip
def test_a_missing_or_empty_key_file_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, content: str | None, reason: str
) -> None:
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("SEQCAST_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(SettingsError, match=reason):
        load_settings()


def test_keys_never_reach_the_log_or_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = app_client(tmp_path, api_keys="sekrit-api", metrics_key="sekrit-metrics")
    client.post("/v1/models/uni/forecast", json=FORECAST, headers=bearer("sekrit-guess"))
    client.post("/v1/models/uni/forecast", json=FORECAST, headers={"X-API-Key": "sekrit-api"})
    client.get("/metrics", headers=bearer("sekrit-metrics"))
    assert "sekrit" not in "\n".join(r.getMessage() for r in caplog.records)
    monkeypatch.setenv("SEQCAST_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SEQCAST_API_KEYS", "sekrit-api")
    monkeypatch.setenv("SEQCAST_WORKERS", "many")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "sekrit" not in str(err.value) and "SEQCAST_WORKERS" in str(err.value)
