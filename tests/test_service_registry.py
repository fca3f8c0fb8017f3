"""Settings fail fast; the registry loads lazily, keeps failures apart, and swaps versions by reference."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from service_stubs import make_manifest, publish_stub, stub_loader

from service.errors import ModelNotFound, NotReady
from service.registry import Registry
from service.settings import Settings, unknown_variables, usable_cores


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEQCAST_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SEQCAST_MAX_SERIES", "16")
    monkeypatch.setenv("SEQCAST_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("SEQCAST_WORKERS", "1")
    monkeypatch.setenv("SEQCAST_THREADS", "1")
    monkeypatch.setenv("SEQCAST_WORKRES", "4")
    s = Settings()
    assert (s.model_dir, s.max_series, s.log_level, s.bind) == (tmp_path, 16, "debug", "127.0.0.1:8000")
    assert s.intra_op == usable_cores()  # one worker, one thread: all cores to its session
    assert unknown_variables() == ["SEQCAST_WORKRES"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"model_dir": "/no/such/dir"},
        {"workers": 0},
        {"max_body_bytes": 1 << 30},
        {"bind": "localhost"},
        {"bind": "127.0.0.1:99999"},
        {"workers": 1, "threads": 1, "intra_op_threads": usable_cores() + 1},
        {"workers": 4 * usable_cores() + 1},
        {"log_level": "loud"},
        {"poll_seconds": 0.1},
    ],
)
def test_unsafe_settings_fail_fast(tmp_path: Path, overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**{"model_dir": tmp_path, **overrides})  # type: ignore[arg-type]


def test_intra_op_threads_share_the_cores(tmp_path: Path) -> None:
    cores = usable_cores()
    assert Settings(model_dir=tmp_path, workers=cores, threads=1).intra_op == 1
    assert Settings(model_dir=tmp_path, workers=1, threads=4).intra_op == max(1, cores // 4)


def test_lazy_load_failure_and_hot_swap(tmp_path: Path) -> None:
    publish_stub(tmp_path, make_manifest("a"))
    publish_stub(tmp_path, make_manifest("broken"))
    swaps: list[tuple[str, str | None, str]] = []
    registry = Registry(tmp_path, stub_loader, on_swap=lambda *a: swaps.append(a))
    assert registry.served("a") is None and not registry.attempted  # nothing at construction
    with pytest.raises(ModelNotFound):
        registry.get("nope")
    with pytest.raises(NotReady, match="cannot parse"):
        registry.get("broken")
    first = registry.get("a")
    assert first.version == "v1" and swaps == [("a", None, "v1")]
    ready, status, _ = registry.readiness()
    assert not ready and status == {"a": "ready", "broken": "failed"}

    # A new good version: load() swaps the record; a request holding the old one keeps it.
    publish_stub(tmp_path, make_manifest("a", version="v2"))
    registry.load("a")
    assert registry.get("a").version == "v2" and first.version == "v1"
    assert swaps[-1] == ("a", "v1", "v2")

    # A new version corrupted on disk after promotion: the old one stays served, the failure is recorded.
    bundle = publish_stub(tmp_path, make_manifest("a", version="v3"))
    (bundle / "model.onnx").write_bytes(b"tampered")
    registry.load("a")
    assert registry.get("a").version == "v2"
    failed = registry.failed("a")
    assert failed is not None and failed.version == "v3" and "sha256" in failed.error


def test_polling_swaps_in_a_new_current_version(tmp_path: Path) -> None:
    publish_stub(tmp_path, make_manifest("a"))
    registry = Registry(tmp_path, stub_loader)
    registry.load_all()
    registry.start_polling(0.05)
    try:
        publish_stub(tmp_path, make_manifest("a", version="v2"))
        deadline = time.monotonic() + 5
        while registry.get("a").version != "v2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert registry.get("a").version == "v2"
    finally:
        registry.stop_polling()
