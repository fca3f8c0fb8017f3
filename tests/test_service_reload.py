"""POST /v1/models/<name>/reload, the admin key, and what /readyz and /v1/models say after a failed swap."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_stubs import make_manifest, publish_stub, settings_for, stub_loader

from service.app import create_app
from service.bundle import store

KEY = "s3cret-admin-key"


def app_with(tmp_path: Path, **settings: object):
    return create_app(settings_for(tmp_path, **settings), loader=stub_loader)


def test_reload_swaps_now_and_reports_versions(tmp_path):
    publish_stub(tmp_path, make_manifest("a"))
    client = app_with(tmp_path).test_client()  # no admin key: the route is open
    assert (
        client.post("/v1/models/a/forecast", json={"series": [{"values": [1] * 6}]}).headers[
            "X-Model-Version"
        ]
        == "v1"
    )
    publish_stub(tmp_path, make_manifest("a", version="v2"))
    r = client.post("/v1/models/a/reload")
    assert r.status_code == 200
    assert r.get_json()["version"] == "v2" and r.get_json()["failed_version"] is None
    answer = client.post("/v1/models/a/forecast", json={"series": [{"values": [1] * 6}]})
    assert answer.headers["X-Model-Version"] == "v2" and answer.get_json()["version"] == "v2"


def test_failed_version_is_reported_and_the_old_one_served(tmp_path):
    publish_stub(tmp_path, make_manifest("a"))
    client = app_with(tmp_path).test_client()
    assert client.get("/readyz").status_code == 200
    bad = publish_stub(tmp_path, make_manifest("a", version="v2"))
    (bad / "model.onnx").write_bytes(b"truncated")  # corrupted after promotion
    info = client.post("/v1/models/a/reload").get_json()
    assert info["version"] == "v1" and info["current"] == "v2" and info["failed_version"] == "v2"
    assert "sha256" in info["error"]
    ready = client.get("/readyz")
    assert ready.status_code == 200  # the last good version still serves
    body = ready.get_json()
    assert body["served"] == {"a": "v1"} and body["failed"]["a"]["version"] == "v2"
    # a rollback to the served version clears the failure
    store.set_current(tmp_path, "a", "v1", reason="rollback")
    info = client.post("/v1/models/a/reload").get_json()
    assert info["failed_version"] is None and info["error"] is None


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Basic abc"}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, 403, "forbidden"),
        ({"Authorization": f"Bearer {KEY}"}, 200, None),
    ],
)
def test_reload_needs_the_admin_key_when_one_is_set(tmp_path, headers, status, code):
    publish_stub(tmp_path, make_manifest("a"))
    client = app_with(tmp_path, admin_key=KEY).test_client()
    r = client.post("/v1/models/a/reload", headers=headers)
    assert r.status_code == status
    if code:
        assert r.get_json()["error"]["code"] == code
        assert KEY not in r.get_data(as_text=True)


def test_reload_unknown_model_is_404(tmp_path):
    publish_stub(tmp_path, make_manifest("a"))
    r = app_with(tmp_path).test_client().post("/v1/models/nope/reload")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "model_not_found"


def test_empty_admin_key_means_unset(tmp_path, monkeypatch):
    from service.settings import Settings

    monkeypatch.setenv("SEQCAST_ADMIN_KEY", "")
    assert Settings(model_dir=tmp_path).admin_key is None
    monkeypatch.setenv("SEQCAST_ADMIN_KEY", KEY)
    assert Settings(model_dir=tmp_path).admin_key.get_secret_value() == KEY
    assert KEY not in repr(Settings(model_dir=tmp_path))
