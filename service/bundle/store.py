"""The bundle store on a filesystem: publish, list, read and point CURRENT.

Layout::

    MODEL_DIR/<name>/<version>/model.onnx
    MODEL_DIR/<name>/<version>/manifest.json
    MODEL_DIR/<name>/CURRENT            one line: the served version

Every write goes to a hidden temporary path beside its final place, is fsynced,
then renamed, so a reader never sees half a bundle or a CURRENT that points at
nothing. Versions are immutable: publishing an existing version is an error.
Standard library and pydantic only; the trainer and the service both use it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from service.bundle.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, valid_name

log = logging.getLogger("seqcast.store")

CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY"  # JSON lines: every change of CURRENT, oldest first
_TMP_PREFIX = ".tmp-"
# A temporary entry this old belongs to a writer that was killed: a publish writes its bundle in
# seconds, and a directory being filled keeps a fresh modification time.
STALE_SECONDS = 3600


class StoreError(Exception):
    """A bundle is missing, malformed, or a write would break an invariant."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version(onnx_sha256: str, now: datetime | None = None) -> str:
    """A version id that sorts by time: ``20261127T101500.123Z-3f2a`` (UTC, milliseconds, model hash).

    Milliseconds, because two versions published within one second (a fast
    retraining loop, CI) must still sort oldest first: list order is age order.
    """
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z-{onnx_sha256[:4]}"


def _check_name(kind: str, text: str) -> None:
    if not valid_name(text):
        raise StoreError(f"invalid {kind} {text!r}: use letters, digits, '_', '-', '.'")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def publish(
    model_dir: Path,
    manifest: Manifest,
    onnx_bytes: bytes,
    extra_files: Mapping[str, bytes] | None = None,
    make_current: bool = True,
) -> Path:
    """Write one bundle atomically and (by default) point CURRENT at it.

    ``extra_files`` maps relative paths (e.g. ``report/loss.png``) to contents.
    Returns the final bundle directory.
    """
    _check_name("model name", manifest.name)
    _check_name("version", manifest.version)
    if sha256_bytes(onnx_bytes) != manifest.onnx_sha256:
        raise StoreError("manifest.onnx_sha256 does not match the model bytes")
    model_root = Path(model_dir) / manifest.name
    final = model_root / manifest.version
    if final.exists():
        raise StoreError(f"version {manifest.name}/{manifest.version} exists; versions are immutable")
    model_root.mkdir(parents=True, exist_ok=True)
    tmp = model_root / f"{_TMP_PREFIX}{manifest.version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _write_synced(tmp / MODEL_FILE, onnx_bytes)
        for rel, data in (extra_files or {}).items():
            target = (tmp / rel).resolve()
            if tmp.resolve() not in target.parents:
                raise StoreError(f"extra file {rel!r} escapes the bundle")
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_synced(target, data)
        # The manifest goes last: a directory with a manifest is complete.
        _write_synced(tmp / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
        for sub in [p for p in tmp.rglob("*") if p.is_dir()] + [tmp]:
            _fsync_dir(sub)
        os.rename(tmp, final)
        _fsync_dir(model_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        set_current(model_dir, manifest.name, manifest.version)
    remove_stale_temps(model_dir, manifest.name)
    return final


def remove_stale_temps(model_dir: Path, name: str, older_than: float = STALE_SECONDS) -> list[str]:
    """Remove the temporary entries (``.tmp-*``) of ``name`` left by writers killed mid-write,
    those not modified for ``older_than`` seconds; returns their names. Publish and prune call it,
    so a store that is written to does not collect them."""
    root = Path(model_dir) / name
    cutoff = time.time() - older_than
    removed = []
    try:
        entries = [p for p in root.iterdir() if p.name.startswith(_TMP_PREFIX)]
    except OSError:
        return []
    for path in entries:
        try:
            if path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:  # gone already (another cleaner), or not ours to remove
            log.warning("%s: could not remove the stale temporary %s: %s", name, path.name, exc)
            continue
        removed.append(path.name)
    if removed:
        log.info("%s: removed %d stale temporary entries (killed writers): %s", name, len(removed), removed)
    return removed


def set_current(model_dir: Path, name: str, version: str, reason: str = "publish") -> None:
    """Point ``CURRENT`` at an existing, verified version (write temp, rename) and log it."""
    _check_name("model name", name)
    _check_name("version", version)
    model_root = Path(model_dir) / name
    verify_bundle(model_root / version)  # refuse to point at a broken bundle
    previous = read_current(model_dir, name)
    tmp = model_root / f"{_TMP_PREFIX}{CURRENT_FILE}-{secrets.token_hex(4)}"
    try:
        _write_synced(tmp, f"{version}\n".encode())
        os.replace(tmp, model_root / CURRENT_FILE)
        _fsync_dir(model_root)
    finally:
        tmp.unlink(missing_ok=True)
    entry = {
        "time": datetime.now(UTC).isoformat(),
        "version": version,
        "previous": previous,
        "reason": reason,
    }
    # One short line per append: O_APPEND writes of this size do not interleave. CURRENT has
    # switched by now: a failed append (a full disk) is logged, not raised, or the caller would
    # report a failure while the new version is live. HISTORY then misses this switch, so
    # previous_version falls back to the newest older version.
    try:
        with open(model_root / HISTORY_FILE, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        log.warning("%s now serves %s, but its HISTORY could not record it: %s", name, version, exc)


def history(model_dir: Path, name: str) -> list[dict[str, str | None]]:
    """Every change of CURRENT, oldest first (unreadable lines are skipped)."""
    path = Path(model_dir) / name / HISTORY_FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:  # not a readable text file: no history to go by
        log.warning("%s: HISTORY is unreadable (%s); going by version age", name, exc)
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line after a crash: ignore it
        if isinstance(entry, dict) and "version" in entry:
            out.append(entry)
    return out


def previous_version(model_dir: Path, name: str) -> str | None:
    """The version that was CURRENT before the current one and still exists.

    Falls back to the newest version older than CURRENT when no history says.
    """
    current = read_current(model_dir, name)
    versions = list_versions(model_dir, name)
    for entry in reversed(history(model_dir, name)):
        if entry["version"] == current and entry.get("previous") in versions:
            prev = entry["previous"]
            if prev != current:
                return prev
    older = [v for v in versions if current is None or v < current]
    return older[-1] if older else None


def prune(model_dir: Path, name: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions, never CURRENT or the version before it.

    Each victim is first renamed to a hidden name (readers stop seeing it at
    once), then removed. Returns the deleted versions.
    """
    if keep < 1:
        raise StoreError("keep must be at least 1")
    versions = list_versions(model_dir, name)
    protected = {read_current(model_dir, name), previous_version(model_dir, name)}
    doomed = [v for v in versions[:-keep] if v not in protected]
    root = Path(model_dir) / name
    for version in doomed:
        hidden = root / f"{_TMP_PREFIX}deleted-{version}-{secrets.token_hex(4)}"
        os.rename(root / version, hidden)
        shutil.rmtree(hidden, ignore_errors=True)
    if doomed:
        _fsync_dir(root)
    remove_stale_temps(model_dir, name)
    return doomed


def write_record(model_dir: Path, name: str, folder: str, filename: str, data: bytes) -> Path:
    """Write a small file (e.g. a decision record) atomically under ``MODEL_DIR/<name>/<folder>/``."""
    _check_name("model name", name)
    target_dir = Path(model_dir) / name / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f"{_TMP_PREFIX}{filename}-{secrets.token_hex(4)}"
    try:
        _write_synced(tmp, data)
        os.replace(tmp, target_dir / filename)
        _fsync_dir(target_dir)
    finally:
        tmp.unlink(missing_ok=True)
    return target_dir / filename


CURRENT_MAX_BYTES = 256  # a version id is ~30 bytes; anything longer is not a CURRENT this store wrote


class Current(NamedTuple):
    """What ``CURRENT`` says: a version, or why it names none (``problem``: missing, empty, ...)."""

    version: str | None
    problem: str | None


def current(model_dir: Path, name: str) -> Current:
    """Read ``CURRENT`` without trusting it: a plain file inside the store (not a symlink, not a
    directory), at most ``CURRENT_MAX_BYTES``, UTF-8, naming a valid version. Never raises: the
    service reads it on every poll and readiness probe, and a bad CURRENT must not fail either."""
    path = Path(model_dir) / name / CURRENT_FILE
    try:
        # O_NOFOLLOW: a CURRENT symlinked to a system file is refused, not read
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return Current(None, "missing")
    except OSError as exc:
        kind = "a symlink" if path.is_symlink() else exc.strerror or "unreadable"
        return Current(None, f"not a plain file ({kind})")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Current(None, "not a plain file")
        data = os.read(fd, CURRENT_MAX_BYTES + 1)
    except OSError as exc:
        return Current(None, f"unreadable ({exc.strerror or exc})")
    finally:
        os.close(fd)
    if len(data) > CURRENT_MAX_BYTES:
        return Current(None, f"longer than {CURRENT_MAX_BYTES} bytes")
    try:
        text = data.decode().strip()
    except UnicodeDecodeError:
        return Current(None, "not UTF-8 text")
    if not text:
        return Current(None, "empty")
    if not valid_name(text):
        return Current(None, "not a version name")  # never echoed: its content is not ours to show
    return Current(text, None)


def read_current(model_dir: Path, name: str) -> str | None:
    """The version CURRENT names; None if the model has none (missing or empty CURRENT).

    Raises ``StoreError`` for a CURRENT that exists but is not one this store
    wrote (see ``current``): a command that acts on the served version must not
    guess it.
    """
    found = current(model_dir, name)
    if found.version is None and found.problem not in ("missing", "empty"):
        raise StoreError(f"{name}: CURRENT is {found.problem}")
    return found.version


def published(model_dir: Path, name: str) -> bool:
    """Whether ``name`` was ever made current: it has a CURRENT file (even a bad one) or a HISTORY."""
    root = Path(model_dir) / name
    return os.path.lexists(root / CURRENT_FILE) or (root / HISTORY_FILE).is_file()


def fallback_versions(model_dir: Path, name: str, wanted: str | None) -> list[str]:
    """Versions to serve, best first, when ``wanted`` (CURRENT's version, or None) cannot be.

    First those that were current, newest first (HISTORY); then the others older
    than ``wanted``, newest first. A version newer than ``wanted`` that was never
    current (a challenger that lost) is never chosen, unless CURRENT names
    nothing and HISTORY is gone: then every version is a candidate.
    """
    versions = list_versions(model_dir, name)
    existing = set(versions)
    order: list[str] = []
    for entry in reversed(history(model_dir, name)):
        for key in ("version", "previous"):
            v = entry.get(key)
            if isinstance(v, str) and v in existing and v != wanted and v not in order:
                order.append(v)
    rest = [
        v for v in reversed(versions) if v not in order and v != wanted and (wanted is None or v < wanted)
    ]
    return order + rest


def list_models(model_dir: Path) -> list[str]:
    """Model names that have a CURRENT or at least one version, sorted."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if valid_name(p.name) and not p.is_symlink() and p.is_dir() and list_versions(root, p.name)
    )


def list_versions(model_dir: Path, name: str) -> list[str]:
    """Complete versions of one model, oldest first (versions sort by time). A version directory
    that is a symlink is not one: the store serves only what lies inside it."""
    root = Path(model_dir) / name
    if not root.is_dir() or root.is_symlink():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if valid_name(p.name) and not p.is_symlink() and p.is_dir() and (p / MANIFEST_FILE).is_file()
    )


def bundle_dir(model_dir: Path, name: str, version: str) -> Path:
    _check_name("model name", name)
    _check_name("version", version)
    return Path(model_dir) / name / version


def _refuse_links(*paths: Path) -> None:
    """A bundle, its manifest and its graph are the store's own files: a symlink (to a file
    outside the store, or to ``/dev/zero``) is refused before anything reads through it."""
    for path in paths:
        if path.is_symlink():
            raise StoreError(f"{path}: a symlink; the store serves only files inside it")
        if path.exists() and not (path.is_dir() or path.is_file()):
            raise StoreError(f"{path}: not a plain file")


def load_manifest(bundle: Path) -> Manifest:
    """Read and validate ``manifest.json`` of a bundle directory (see ``Manifest.from_stored``)."""
    path = Path(bundle) / MANIFEST_FILE
    _refuse_links(Path(bundle), path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc
    try:
        return Manifest.from_stored(json.loads(text))
    except RecursionError:  # absurdly deep JSON: json.loads recurses
        raise StoreError(f"{path}: invalid manifest: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and ValidationError are ValueErrors
        raise StoreError(f"{path}: invalid manifest: {exc}") from exc


def verify_bundle(bundle: Path) -> Manifest:
    """Load the manifest and check that model.onnx is the file it names."""
    manifest = load_manifest(bundle)
    onnx_path = Path(bundle) / MODEL_FILE
    _refuse_links(onnx_path)
    if not onnx_path.is_file():
        raise StoreError(f"{onnx_path}: missing")
    if sha256_file(onnx_path) != manifest.onnx_sha256:
        raise StoreError(f"{onnx_path}: sha256 does not match the manifest")
    if Path(bundle).name != manifest.version or Path(bundle).parent.name != manifest.name:
        raise StoreError(f"{bundle}: directory does not match manifest name/version")
    return manifest
