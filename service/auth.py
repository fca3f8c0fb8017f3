"""Optional API keys: who may forecast, read metrics, or reload.

Three scopes, each open until a key is set for it:

- ``api``: every ``/v1`` model route and the ``/v2`` model routes (metadata,
  ready, infer). Keys: ``SEQCAST_API_KEYS`` (comma-separated) and/or
  ``SEQCAST_API_KEYS_FILE`` (one per line, ``#`` comments).
- ``metrics``: ``GET /metrics``. Key: ``SEQCAST_METRICS_KEY``.
- ``admin``: ``POST /v1/models/<name>/reload``. Key: ``SEQCAST_ADMIN_KEY`` or
  ``SEQCAST_ADMIN_KEY_FILE``. The admin key opens the other scopes too.

Health, readiness, the OpenAPI document and the docs page stay open: probes
and load balancers carry no keys.

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys
are compared as SHA-256 digests with ``hmac.compare_digest``, against every
key of the scope without stopping at a match, so timing tells nothing about
which key or how much of it matched. Key files are re-read when they change
(checked at most once a second), so keys rotate without a restart: add the
new key, move clients, remove the old one. A file that becomes empty or
unreadable keeps the keys last read (a half-written file must not lock
everyone out) and says so in the log.

Wrong keys are throttled per client: after ``SEQCAST_AUTH_FAILURES`` of them
within ``SEQCAST_AUTH_WINDOW_SECONDS``, that client gets 429 with
``Retry-After`` until the window ends, whatever key it sends. The client is
the peer address, or the address a trusted proxy forwarded
(``SEQCAST_PROXY_HOPS``). Counts are per worker process. No key, given or
configured, is ever logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from flask import Request
from pydantic import SecretStr

from service.errors import Forbidden, TooManyAttempts, Unauthorized
from service.settings import Settings, read_key_file

log = logging.getLogger("seqcast.auth")

Scope = Literal["api", "metrics", "admin"]
# endpoints that need a key of a scope (when one is set); every other endpoint is open
SCOPES: dict[str, Scope] = {
    "v1.list_models": "api",
    "v1.get_model": "api",
    "v1.report_view": "api",
    "v1.forecast_view": "api",
    "v2.model_ready": "api",
    "v2.model_metadata": "api",
    "v2.infer": "api",
    "ops.metrics": "metrics",
    "v1.reload_view": "admin",
}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeySet:
    """Keys from an inline value (comma-separated) and a file (re-read when it changes)."""

    RECHECK_SECONDS = 1.0

    def __init__(self, inline: SecretStr | None, path: Path | None, what: str) -> None:
        self._what = what
        listed = inline.get_secret_value().split(",") if inline is not None else []
        self._inline = [_digest(k.strip()) for k in listed if k.strip()]
        self._path = path
        self._from_file: list[bytes] = []
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if path is not None:
            self._reload(force=True)

    @property
    def configured(self) -> bool:
        return bool(self._inline) or self._path is not None

    def _reload(self, force: bool = False) -> None:
        assert self._path is not None
        try:
            st = self._path.stat()
            stamp = (st.st_mtime, st.st_size)
            if not force and stamp == self._stamp:
                return
            keys = read_key_file(self._path)
        except (OSError, ValueError) as exc:
            if force:
                raise
            log.warning("%s file %s unreadable (%s): keeping the keys last read", self._what, self._path, exc)
            return
        if not keys:
            if force:
                raise ValueError(f"{self._what} file {self._path} holds no key")
            log.warning("%s file %s holds no key: keeping the keys last read", self._what, self._path)
            return
        self._from_file, self._stamp = [_digest(k) for k in keys], stamp
        if not force:
            log.info("%s file %s re-read: %d keys", self._what, self._path, len(keys))

    def matches(self, given: str) -> bool:
        """Whether ``given`` is one of the keys; compares against every key (constant time)."""
        if self._path is not None:
            now = time.monotonic()
            if now - self._checked >= self.RECHECK_SECONDS:
                with self._lock:
                    self._checked = now
                    self._reload()
        digest = _digest(given)
        found = False
        for key in self._inline + self._from_file:
            found |= hmac.compare_digest(digest, key)
        return found


class Throttle:
    """Wrong keys per client in fixed windows; at most ``clients`` remembered (oldest dropped)."""

    def __init__(self, limit: int, window: float, clients: int = 10_000) -> None:
        self.limit, self.window, self.clients = limit, window, clients
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # client -> (window start, count)
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float) -> int | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        entry = self._seen.get(client)
        if entry is None or entry[1] < self.limit or now - entry[0] >= self.window:
            return None
        return max(1, math.ceil(entry[0] + self.window - now))

    def failed(self, client: str, now: float) -> None:
        with self._lock:
            start, count = self._seen.pop(client, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            self._seen[client] = (start, count + 1)
            while len(self._seen) > self.clients:
                self._seen.popitem(last=False)


def given_key(req: Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = req.headers.get("X-API-Key", "").strip()
    return key or None


class Auth:
    """The keys of every scope and the throttle; ``check`` runs before each request."""

    def __init__(self, api: KeySet, metrics: KeySet, admin: KeySet, throttle: Throttle) -> None:
        self._keys: dict[Scope, list[KeySet]] = {
            "api": [api, admin],
            "metrics": [metrics, admin],
            "admin": [admin],
        }
        self._guarded: dict[Scope, bool] = {
            "api": api.configured,
            "metrics": metrics.configured,
            "admin": admin.configured,
        }
        self.throttle = throttle

    def check(self, req: Request) -> None:
        """Raise 401 (no key), 403 (wrong key) or 429 (too many wrong keys) for a guarded endpoint."""
        scope = SCOPES.get(req.endpoint or "")
        if scope is None or not self._guarded[scope]:
            return
        client = req.remote_addr or "unknown"
        now = time.monotonic()
        wait = self.throttle.retry_after(client, now)
        if wait is not None:
            raise TooManyAttempts(
                f"too many wrong keys from this client: try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        given = given_key(req)
        if given is None:
            need = "the admin key" if scope == "admin" else f"a key ({scope})"
            raise Unauthorized(
                f"this route needs {need}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = False
        for keys in self._keys[scope]:
            found |= keys.matches(given)
        if not found:
            self.throttle.failed(client, now)
            raise Forbidden("wrong key" if scope != "admin" else "wrong admin key")


def from_settings(settings: Settings) -> Auth:
    """The service's keys and throttle, as its settings say."""
    return Auth(
        api=KeySet(settings.api_keys, settings.api_keys_file, "API keys"),
        metrics=KeySet(settings.metrics_key, None, "metrics key"),
        admin=KeySet(settings.admin_key, settings.admin_key_file, "admin key"),
        throttle=Throttle(settings.auth_failures, settings.auth_window_seconds),
    )
