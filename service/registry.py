"""Which models this worker serves: found in MODEL_DIR, loaded per worker after fork.

Nothing is loaded at import time or in ``create_app`` (which may run in the
gunicorn master with ``--preload``): onnxruntime thread pools do not survive a
fork. The gunicorn config calls ``load_all`` from ``post_worker_init``, in the
worker, before it accepts a connection; any other server loads a model on its
first request (``get``) or on the first ``/readyz``.

For each model the registry keeps a ``Served`` record (manifest, predictor,
version) and, if the last load failed, a ``Failed`` record. Records are
immutable and the dicts holding them are replaced, never mutated, under a
lock: a request takes one ``Served`` and uses it to the end, so a swap never
mixes two versions in one answer.

Last known good: a version that fails to load never replaces the one served.
A worker that starts while CURRENT is bad (names a broken bundle, or is not
a CURRENT at all) serves the newest version that was current and loads
(``store.fallback_versions``), so old and new workers serve the same one;
readiness then says which version is served and which one CURRENT wants.

Hot swap: with ``SEQCAST_POLL_SECONDS > 0`` each worker polls CURRENT in a
daemon thread (``start_polling``); a new version is loaded and warmed up
beside the old one, then swapped in; if it fails, the old one stays served and
the failure is recorded (retried only when CURRENT moves again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.bundle import store
from service.bundle.manifest import Manifest, valid_name
from service.bundle.predictor import Predictor
from service.errors import ModelNotFound, NotReady
from service.schemas import ModelStatus

log = logging.getLogger("seqcast.registry")

Loader = Callable[[Path], Predictor]  # bundle directory -> a loaded, warmed-up predictor


@dataclass(frozen=True)
class Served:
    name: str
    version: str
    manifest: Manifest
    predictor: Predictor
    load_seconds: float


@dataclass(frozen=True)
class Failed:
    name: str
    version: str | None  # the version that failed (None: CURRENT unreadable)
    error: str


class Registry:
    def __init__(
        self,
        model_dir: Path,
        loader: Loader,
        on_swap: Callable[[str, str | None, str], None] | None = None,
        on_fail: Callable[[str], None] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._loader = loader
        self._on_swap = on_swap
        self._on_fail = on_fail
        self._lock = threading.Lock()  # serialises loads; readers never take it
        self._served: dict[str, Served] = {}
        self._failed: dict[str, Failed] = {}
        self._attempted = False
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- reading (lock-free) -------------------------------------------------

    def names(self) -> list[str]:
        """Published models: those with a CURRENT (even a bad one) or a HISTORY (read from disk each call)."""
        return [n for n in store.list_models(self.model_dir) if store.published(self.model_dir, n)]

    def published(self, name: str) -> bool:
        return (
            valid_name(name)
            and store.published(self.model_dir, name)
            and bool(store.list_versions(self.model_dir, name))
        )

    def wanted(self, name: str) -> store.Current:
        """What CURRENT names now (never raises; see ``store.current``)."""
        return store.current(self.model_dir, name)

    def served(self, name: str) -> Served | None:
        return self._served.get(name)

    def failed(self, name: str) -> Failed | None:
        return self._failed.get(name)

    def get(self, name: str) -> Served:
        """The served record for ``name``; loads it on first use. 404 unknown, 503 failed."""
        served = self._served.get(name)
        if served is not None:
            return served
        if not self.published(name):
            raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
        self.load(name)
        served = self._served.get(name)
        if served is None:
            failed = self._failed.get(name)
            raise NotReady(f"model {name!r} is not ready: {failed.error if failed else 'not loaded'}")
        return served

    def readiness(self) -> tuple[bool, dict[str, ModelStatus], str | None]:
        """(ready, status per model, reason): ready when every published model is served."""
        names = self.names()
        status = {n: self._status(n) for n in names}
        if not names:
            return False, status, "no published model in MODEL_DIR"
        waiting = sorted(n for n, s in status.items() if s != "ready")
        if waiting:
            return False, status, "not ready: " + ", ".join(f"{n} ({status[n]})" for n in waiting)
        return True, status, None

    def _status(self, name: str) -> ModelStatus:
        if name in self._served:
            return "ready"
        return "failed" if name in self._failed else "not_loaded"

    @property
    def attempted(self) -> bool:
        """Whether ``load_all`` has run in this process."""
        return self._attempted

    # -- loading (under the lock) --------------------------------------------

    def start_polling(self, seconds: float) -> None:
        """Re-read every CURRENT each ``seconds`` in a daemon thread of this process; 0 disables.

        Call it in the process that serves (a gunicorn worker), after fork:
        threads do not survive a fork.
        """
        if seconds <= 0 or self._poller is not None:
            return

        def poll() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.load_all()
                except Exception:  # a bad directory listing must not end the poller
                    log.exception("polling %s failed", self.model_dir)

        self._poller = threading.Thread(target=poll, name="seqcast-poll", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    def load_all(self, blocking: bool = True) -> bool:
        """Load every published model not yet served at its CURRENT version.

        Returns False, without waiting, if ``blocking`` is False and another
        thread is loading.
        """
        if not self._lock.acquire(blocking=blocking):
            return False
        try:
            for name in self.names():
                self._load_locked(name)
            self._attempted = True
        finally:
            self._lock.release()
        return True

    def load(self, name: str, retry_failed: bool = False) -> None:
        """Load ``name`` at its CURRENT version unless already served (or failed at that version,
        unless ``retry_failed``: an operator asking again after fixing a transient problem)."""
        with self._lock:
            if retry_failed and name in self._failed:
                self._failed = {k: v for k, v in self._failed.items() if k != name}
            self._load_locked(name)

    def _load_locked(self, name: str) -> None:
        wanted = store.current(self.model_dir, name)
        version = wanted.version
        current = self._served.get(name)
        failed = self._failed.get(name)
        if current and current.version == version:
            if failed is not None:  # CURRENT moved back to the served version (a rollback)
                self._failed = {k: v for k, v in self._failed.items() if k != name}
            return
        if failed and failed.version == version:
            return  # retried when CURRENT moves, not on every request
        if version is None:
            error = f"CURRENT is {wanted.problem}"
            log.error("model %s: %s", name, error)
        else:
            loaded = self._try(name, version)
            if isinstance(loaded, Served):  # CURRENT's version: any earlier failure is over
                self._failed = {k: v for k, v in self._failed.items() if k != name}
                self._swap(loaded, current)
                return
            error = loaded
        self._failed = {**self._failed, name: Failed(name, version, error)}
        if self._on_fail:
            self._on_fail(name)
        if current is not None:
            return  # last known good: the version this worker serves stays served
        # Nothing served yet (a worker that starts while CURRENT is bad): the newest version that
        # was current and still loads, so every worker, old or new, serves the same one.
        for fallback in store.fallback_versions(self.model_dir, name, version):
            loaded = self._try(name, fallback)
            if isinstance(loaded, Served):
                log.warning("model %s: serving %s, the last good version (%s)", name, fallback, error)
                self._swap(loaded, None)
                return

    def _try(self, name: str, version: str) -> Served | str:
        """Load and warm up one version: its record, or the error to show (no absolute paths)."""
        started = time.perf_counter()
        try:
            bundle = store.bundle_dir(self.model_dir, name, version)
            manifest = store.load_manifest(bundle)
            if (manifest.name, manifest.version) != (name, version):
                raise store.StoreError(f"bundle {name}/{version} holds {manifest.name}/{manifest.version}")
            predictor = self._loader(bundle)  # verifies the hash, opens and warms up the graph
        except Exception as exc:  # any failure of one bundle must leave the others served
            log.error("model %s version %s failed to load: %s", name, version, exc)
            return self.public_error(exc)
        return Served(name, version, manifest, predictor, time.perf_counter() - started)

    def _swap(self, record: Served, previous: Served | None) -> None:
        self._served = {**self._served, record.name: record}
        log.info(
            "model %s version %s loaded and warmed up in %.3fs",
            record.name,
            record.version,
            record.load_seconds,
        )
        if self._on_swap:
            self._on_swap(record.name, previous.version if previous else None, record.version)

    def public_error(self, exc: BaseException) -> str:
        """``exc`` as a client may read it: paths relative to MODEL_DIR, and onnxruntime's own
        message (paths, graph internals) left to the worker's log."""
        if type(exc).__module__.startswith("onnxruntime"):
            return f"{type(exc).__name__}: onnxruntime could not load the graph (the worker's log says why)"
        text = f"{type(exc).__name__}: {exc}"
        for root in sorted({str(self.model_dir.resolve()), str(self.model_dir)}, key=len, reverse=True):
            text = text.replace(root, "MODEL_DIR")
        return text[:500]
