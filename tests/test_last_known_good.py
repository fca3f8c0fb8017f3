"""Last known good on every worker, and readiness that tells the truth (issue 13, findings 2, 3, 7).

A worker that starts while CURRENT is bad (names a broken bundle, or is not a
CURRENT at all) serves the newest version that was current and loads; every
route that reads CURRENT answers without a 500; nothing an answer says echoes
CURRENT's content or an absolute path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from service_stubs import make_manifest, publish_stub, settings_for, stub_loader

from service.app import create_app
from service.bundle import store
from service.registry import Registry

SECRET = "root:x:0:0:a line of a system file that no answer may show"


def history_of_two(model_dir: Path) -> Path:
    """Model ``m``: v1 published, then v2 published over it (HISTORY: v1, v1 -> v2); returns v2's bundle."""
    publish_stub(model_dir, make_manifest("m", version="v1"))
    return publish_stub(model_dir, make_manifest("m", version="v2"))


def corrupt(bundle: Path) -> None:
    (bundle / "model.onnx").write_bytes(b"tampered after publishing")


def write_current(model_dir: Path, data: bytes) -> None:
    (model_dir / "m" / "CURRENT").write_bytes(data)


def current_is_a_directory(model_dir: Path) -> None:
    (model_dir / "m" / "CURRENT").unlink()
    (model_dir / "m" / "CURRENT").mkdir()


def current_links_out(model_dir: Path) -> None:
    outside = model_dir.parent / "system-file"
    outside.write_text(SECRET + "\n")
    (model_dir / "m" / "CURRENT").unlink()
    (model_dir / "m" / "CURRENT").symlink_to(outside)


def current_is_missing(model_dir: Path) -> None:
    (model_dir / "m" / "CURRENT").unlink()


BAD_CURRENTS: dict[str, Callable[[Path], None]] = {
    "names a broken bundle": lambda d: corrupt(d / "m" / "v2"),
    "not UTF-8": lambda d: write_current(d, b"\xff\xfe\x00v2\n"),
    "a directory": current_is_a_directory,
    "a symlink to a system file": current_links_out,
    "huge": lambda d: write_current(d, SECRET.encode() * 10_000),
    "not a version name": lambda d: write_current(d, (SECRET + "\n").encode()),
    "empty": lambda d: write_current(d, b""),
    "missing": current_is_missing,
}


def body_text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize("breakage", BAD_CURRENTS, ids=list(BAD_CURRENTS))
def test_a_worker_started_with_a_bad_current_serves_the_last_good_version(
    tmp_path: Path, breakage: str
) -> None:
    model_dir = tmp_path / "models"
    history_of_two(model_dir)
    BAD_CURRENTS[breakage](model_dir)
    client = create_app(settings_for(model_dir), loader=stub_loader).test_client()

    # a broken v2 leaves v1; a bad CURRENT leaves v2, the last version that was current (HISTORY)
    wanted = "v2" if breakage == "names a broken bundle" else None
    good = "v1" if wanted else "v2"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["served"] == {"m": good}
    assert ready.json["wanted"] == {"m": wanted}
    assert ready.json["failed"]["m"]["version"] == wanted
    assert client.get("/v2/health/ready").status_code == 200

    listed = client.get("/v1/models")
    assert listed.status_code == 200 and [m["name"] for m in listed.json["models"]] == ["m"]
    info = client.get("/v1/models/m")
    assert info.status_code == 200
    assert info.json["version"] == good and info.json["current"] == wanted and info.json["status"] == "ready"
    assert info.json["error"]

    # 0 failed forecasts of 100 (the goal), every one from the last good version
    payload = {"series": [{"values": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}]}
    answers = [client.post("/v1/models/m/forecast", json=payload) for _ in range(100)]
    assert [a.status_code for a in answers] == [200] * 100
    assert {a.headers["X-Model-Version"] for a in answers} == {good}
    assert client.get("/v2/models/m/ready").status_code == 200

    for answer in (ready, listed, info, client.post("/v1/models/m/reload")):
        text = body_text(answer)
        assert SECRET[:20] not in text and str(tmp_path) not in text, text


def test_a_fix_of_current_is_picked_up_and_readiness_says_served_equals_wanted(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    history_of_two(model_dir)
    write_current(model_dir, b"\xff\n")
    registry = Registry(model_dir, stub_loader)
    registry.load_all()
    assert registry.served("m").version == "v2" and registry.failed("m") is not None  # type: ignore[union-attr]
    write_current(model_dir, b"v1\n")  # a rollback, written by hand
    registry.load_all()
    assert registry.served("m").version == "v1" and registry.failed("m") is None  # type: ignore[union-attr]


def test_a_challenger_that_was_never_current_is_not_a_fallback(tmp_path: Path) -> None:
    """v1 and v2 were current, v2 is broken; v3 (newer, published without CURRENT: a challenger that
    lost) loads fine but was never promoted: the worker serves v1."""
    model_dir = tmp_path / "models"
    corrupt(history_of_two(model_dir))
    store.publish(model_dir, make_manifest("m", version="v3"), b"stub: not an ONNX graph", make_current=False)
    assert store.fallback_versions(model_dir, "m", "v2") == ["v1"]
    registry = Registry(model_dir, stub_loader)
    registry.load_all()
    assert registry.served("m").version == "v1"  # type: ignore[union-attr]


def test_without_history_the_newest_older_version_that_loads_is_served(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    publish_stub(model_dir, make_manifest("m", version="v1"))
    publish_stub(model_dir, make_manifest("m", version="v2"))
    corrupt(publish_stub(model_dir, make_manifest("m", version="v3")))
    (model_dir / "m" / "HISTORY").write_bytes(b"\xff\xfe not json, not text")
    registry = Registry(model_dir, stub_loader)
    registry.load_all()
    assert registry.served("m").version == "v2"  # type: ignore[union-attr]


def test_every_version_broken_means_not_ready_without_a_500(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    corrupt(publish_stub(model_dir, make_manifest("m", version="v1")))
    client = create_app(settings_for(model_dir), loader=stub_loader).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "sha256" in body_text(ready)
    assert str(tmp_path) not in body_text(ready)
    forecast = client.post("/v1/models/m/forecast", json={"series": [{"values": [1.0] * 6}]})
    assert forecast.status_code == 503 and str(tmp_path) not in body_text(forecast)


def test_a_version_directory_symlinked_out_of_the_store_is_not_served(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    publish_stub(model_dir, make_manifest("m", version="v1"))
    elsewhere = publish_stub(tmp_path / "elsewhere", make_manifest("m", version="v2"))
    os.symlink(elsewhere, model_dir / "m" / "v2")
    assert store.list_versions(model_dir, "m") == ["v1"]
    write_current(model_dir, b"v2\n")
    client = create_app(settings_for(model_dir), loader=stub_loader).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["served"] == {"m": "v1"}
    error = ready.json["failed"]["m"]["error"]
    assert "symlink" in error and str(tmp_path) not in error, error
    assert client.get("/v1/models/m").json["versions"] == ["v1"]


def test_read_current_refuses_what_the_store_did_not_write(tmp_path: Path) -> None:
    """The trainer's commands (promote, retrain) must not guess the served version either."""
    model_dir = tmp_path / "models"
    history_of_two(model_dir)
    assert store.read_current(model_dir, "m") == "v2"
    current_links_out(model_dir)
    with pytest.raises(store.StoreError, match="symlink"):
        store.read_current(model_dir, "m")
    write_current_fresh = model_dir / "m" / "CURRENT"
    write_current_fresh.unlink()
    write_current_fresh.write_bytes(b"x" * 1000)
    with pytest.raises(store.StoreError, match="longer than"):
        store.read_current(model_dir, "m")
    write_current_fresh.write_bytes(b"")
    assert store.read_current(model_dir, "m") is None
