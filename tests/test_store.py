"""The bundle store: atomic publish, immutable versions, CURRENT always valid."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from service.bundle import store
from service.bundle.manifest import DataInfo, InputWindow, Manifest, ModelSpec, NetworkSpec

ONNX = b"not really onnx, but bytes with a hash"


def manifest(version: str = "20260101T000000Z-abcd", name: str = "m", data: bytes = ONNX) -> Manifest:
    return Manifest(
        name=name,
        version=version,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        spec=ModelSpec(
            network=NetworkSpec(),
            input_window=InputWindow(length=12, min_length=12),
            features=["value"],
            targets=["value"],
            horizon=3,
            frequency="MS",
        ),
        training_config={"k": 1},
        data=DataInfo(fingerprint="f" * 64, source="x.csv", series=1, rows=10),
        onnx_sha256=store.sha256_bytes(data),
    )


def test_round_trip(tmp_path):
    m = manifest()
    path = store.publish(tmp_path, m, ONNX, {"report/metrics.txt": b"ok"})
    assert path == tmp_path / "m" / m.version
    assert store.read_current(tmp_path, "m") == m.version
    assert store.list_models(tmp_path) == ["m"]
    assert store.list_versions(tmp_path, "m") == [m.version]
    assert store.verify_bundle(path) == m
    assert (path / "report" / "metrics.txt").read_bytes() == b"ok"
    assert json.loads((path / "manifest.json").read_text())["schema_version"] == 2


def test_versions_are_immutable(tmp_path):
    store.publish(tmp_path, manifest(), ONNX)
    with pytest.raises(store.StoreError, match="versions are immutable"):
        store.publish(tmp_path, manifest(), ONNX)


def test_hash_mismatch_is_refused_and_detected(tmp_path):
    with pytest.raises(store.StoreError, match="does not match the model bytes"):
        store.publish(tmp_path, manifest(), ONNX + b"x")
    path = store.publish(tmp_path, manifest(), ONNX)
    (path / "model.onnx").write_bytes(b"corrupted")
    with pytest.raises(store.StoreError, match="sha256 does not match"):
        store.verify_bundle(path)


def test_interrupted_publish_leaves_no_visible_version(tmp_path, monkeypatch):
    first = manifest("20260101T000000Z-aaaa")
    store.publish(tmp_path, first, ONNX)
    calls = {"n": 0}
    real_write = store._write_synced

    def dying_write(path, data):  # the process "dies" after the first file of the bundle
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed halfway")
        real_write(path, data)

    monkeypatch.setattr(store, "_write_synced", dying_write)
    with pytest.raises(KeyboardInterrupt):
        store.publish(tmp_path, manifest("20260102T000000Z-bbbb"), ONNX, {"report/a.txt": b"a"})
    assert store.list_versions(tmp_path, "m") == [first.version]
    assert store.read_current(tmp_path, "m") == first.version
    assert sorted(os.listdir(tmp_path / "m")) == sorted(["CURRENT", "HISTORY", first.version])  # no temp left


def test_crash_before_rename_is_invisible_to_readers(tmp_path):
    store.publish(tmp_path, manifest(), ONNX)
    # a half-written temp directory from a crashed writer (no cleanup ran)
    stale = tmp_path / "m" / ".tmp-20260105T000000Z-cccc-1234"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    assert store.list_versions(tmp_path, "m") == [manifest().version]


def test_current_must_point_at_a_valid_version(tmp_path):
    store.publish(tmp_path, manifest(), ONNX)
    with pytest.raises(store.StoreError, match="cannot read manifest"):
        store.set_current(tmp_path, "m", "20990101T000000Z-ffff")
    assert store.read_current(tmp_path, "m") == manifest().version


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", ".hidden", "x" * 80])
def test_names_cannot_escape_the_store(tmp_path, bad):
    with pytest.raises(store.StoreError, match="invalid"):
        store.bundle_dir(tmp_path, bad, "v1")


def _with(spec: dict | None = None, **network) -> dict:
    raw = manifest().model_dump()
    raw["spec"].update(spec or {})
    raw["spec"]["network"].update(network)
    return raw


def test_manifest_rejects_targets_not_leading_features():
    with pytest.raises(ValueError, match="features must start with the targets"):
        Manifest.model_validate(_with({"features": ["temp", "value"]}))


def test_manifest_rejects_a_damping_without_a_seasonal_base_or_unresolved():
    with pytest.raises(ValueError, match="base_damping needs base_lag"):
        Manifest.model_validate(_with(base_damping=0.9))
    with pytest.raises(ValueError, match="must be resolved"):
        Manifest.model_validate(_with(base_lag=11, base_damping="auto"))
    ok = Manifest.model_validate(_with(base_lag=11, base_damping=0.9))
    assert (ok.spec.network.base_lag, ok.spec.network.base_damping) == (11, 0.9)


def test_manifest_rejects_a_window_too_short_for_its_base():
    with pytest.raises(ValueError, match="base_lag 13 needs window.length >= 13"):
        Manifest.model_validate(_with(base_lag=13))


def _publish_many(tmp_path, n: int) -> list[str]:
    versions = [f"2026010{i}T000000Z-{i:04d}" for i in range(1, n + 1)]
    for v in versions:
        store.publish(tmp_path, manifest(v), ONNX)
    return versions


def test_history_and_previous_version_follow_promotions(tmp_path):
    v1, v2, v3 = _publish_many(tmp_path, 3)
    assert store.read_current(tmp_path, "m") == v3
    assert store.previous_version(tmp_path, "m") == v2
    store.set_current(tmp_path, "m", v1, reason="promote")
    assert store.previous_version(tmp_path, "m") == v3  # previous CURRENT, not previous by age
    assert [h["version"] for h in store.history(tmp_path, "m")] == [v1, v2, v3, v1]
    assert store.history(tmp_path, "m")[-1]["reason"] == "promote"


def test_torn_history_line_is_ignored(tmp_path):
    v1, v2 = _publish_many(tmp_path, 2)
    with open(tmp_path / "m" / "HISTORY", "a") as fh:
        fh.write('{"version": "2026')  # a crash mid-append
    assert store.previous_version(tmp_path, "m") == v1


def test_a_history_that_cannot_be_written_does_not_undo_a_switch(tmp_path, caplog):
    v1, v2 = _publish_many(tmp_path, 2)
    (tmp_path / "m" / "HISTORY").unlink()
    (tmp_path / "m" / "HISTORY").mkdir()  # an append fails, as on a full disk
    with caplog.at_level("WARNING", logger="seqcast.store"):
        store.set_current(tmp_path, "m", v1, reason="rollback")  # no exception: the switch happened
    assert store.read_current(tmp_path, "m") == v1
    assert "now serves" in caplog.text and "HISTORY could not record it" in caplog.text
    # without a readable history, the version before CURRENT is the newest older one
    assert store.history(tmp_path, "m") == []
    assert store.previous_version(tmp_path, "m") is None  # nothing is older than v1


def test_temporaries_of_killed_writers_are_removed_once_stale(tmp_path):
    (v1,) = _publish_many(tmp_path, 1)
    root = tmp_path / "m"
    old_dir, old_file, fresh = root / ".tmp-20260101-dead", root / ".tmp-CURRENT-dead", root / ".tmp-busy"
    old_dir.mkdir()
    (old_dir / "model.onnx").write_bytes(b"half")
    old_file.write_text("v")
    fresh.mkdir()  # another publish, still writing
    hours_ago = datetime.now(UTC).timestamp() - 2 * 3600
    for path in (old_dir, old_file):
        os.utime(path, (hours_ago, hours_ago))
    store.publish(tmp_path, manifest("20260102T000000Z-0002"), ONNX)  # cleans up after the killed ones
    assert not old_dir.exists() and not old_file.exists()
    assert fresh.exists()  # young: maybe a writer at work
    os.utime(fresh, (hours_ago, hours_ago))
    store.prune(tmp_path, "m", keep=5)  # prune does too
    assert not fresh.exists()
    assert store.read_current(tmp_path, "m") != v1  # the second publish is served


def test_prune_keeps_newest_current_and_previous(tmp_path):
    versions = _publish_many(tmp_path, 6)
    store.set_current(tmp_path, "m", versions[1], reason="rollback")  # CURRENT old, previous = newest
    deleted = store.prune(tmp_path, "m", keep=2)
    assert deleted == [versions[0], versions[2], versions[3]]
    assert store.list_versions(tmp_path, "m") == [versions[1], versions[4], versions[5]]
    assert store.read_current(tmp_path, "m") == versions[1]
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(store.StoreError, match="keep must be at least 1"):
        store.prune(tmp_path, "m", keep=0)


def test_set_current_refuses_a_corrupt_bundle(tmp_path):
    v1, v2 = _publish_many(tmp_path, 2)
    (tmp_path / "m" / v1 / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(store.StoreError, match="sha256 does not match"):
        store.set_current(tmp_path, "m", v1)
    assert store.read_current(tmp_path, "m") == v2


def test_write_record_is_atomic_and_named(tmp_path):
    path = store.write_record(tmp_path, "m", "decisions", "d1.json", b"{}")
    assert path.read_bytes() == b"{}"
    assert [p.name for p in path.parent.iterdir()] == ["d1.json"]


def test_versions_published_within_one_second_sort_by_age():
    t0 = datetime(2026, 11, 27, 10, 15, 0, 1000, tzinfo=UTC)
    ids = [
        store.new_version(h * 64, t0.replace(microsecond=ms * 1000))
        for ms, h in ((1, "f"), (2, "0"), (3, "a"))
    ]
    assert ids == sorted(ids)
    assert ids[0] == "20261127T101500.001Z-ffff"


def _rewrite_manifest(path, change):
    file = path / "manifest.json"
    raw = json.loads(file.read_text())
    change(raw)
    file.write_text(json.dumps(raw))


def test_a_newer_trainers_extra_top_level_fields_are_ignored(tmp_path):
    m = manifest()
    path = store.publish(tmp_path, m, ONNX)
    _rewrite_manifest(path, lambda raw: raw.update(calibration_note="from a newer trainer", members=7))
    assert store.load_manifest(path) == m
    assert store.verify_bundle(path) == m


def _as_schema_1(raw: dict) -> None:
    """Rewrite a manifest as the trainer wrote it before ModelSpec (schema 1), in place."""
    spec = raw.pop("spec")
    network = spec.pop("network")
    raw.update(spec)
    raw.update(
        schema_version=1,
        cell=network["cell"],
        head=network["head"],
        scaling=network["scaling"],
        skip_lag=7,
        skip_damping=0.9,
        training_config={"model": {"hidden": 16, "skip_gate": True, "skip_damping": "auto"}},
    )


def test_a_schema_1_manifest_is_served_as_the_same_model(tmp_path):
    m = manifest()
    path = store.publish(tmp_path, m, ONNX)
    _rewrite_manifest(path, _as_schema_1)
    loaded = store.verify_bundle(path)
    network = loaded.spec.network
    # the network's options come from the old top level and the stored [model] section, renamed;
    # the damping is the resolved number, not the config's "auto"
    assert (network.base_lag, network.base_damping, network.correction_gate, network.hidden) == (
        7,
        0.9,
        True,
        16,
    )
    assert loaded.spec.model_dump(exclude={"network"}) == m.spec.model_dump(exclude={"network"})
    _rewrite_manifest(path, lambda raw: raw.pop("schema_version"))  # absent: version 1, as then
    assert store.load_manifest(path) == loaded


def test_a_manifest_nested_absurdly_deep_is_an_invalid_manifest_not_a_crash(tmp_path):
    path = store.publish(tmp_path, manifest(), ONNX)
    (path / "manifest.json").write_text('{"schema_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(store.StoreError, match="nested too deeply"):
        store.load_manifest(path)


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        (lambda raw: raw.update(schema_version=3, members=7), "schema_version"),  # meaning changed
        (lambda raw: raw["spec"]["input_window"].update(stride=2), "spec.input_window.stride"),  # strict
        (lambda raw: raw["spec"].update(horizon="three"), "spec.horizon"),
        (lambda raw: raw["spec"].pop("targets"), "spec.targets"),
        (lambda raw: raw["spec"]["network"].update(base_lag=7, base_damping="auto"), "resolved"),
    ],
)
def test_what_this_service_cannot_vouch_for_is_refused(tmp_path, change, fault):
    path = store.publish(tmp_path, manifest(), ONNX)
    _rewrite_manifest(path, change)
    with pytest.raises(store.StoreError, match=fault):
        store.load_manifest(path)
