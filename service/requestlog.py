"""Request ids and the one JSON log line per request.

Every request gets an id: the client's ``X-Request-Id`` when it is a plain
token (letters, digits and ``._:/+=-``, at most 128 characters: a proxy's or
a tracer's id), else a new random one. It comes back in the ``X-Request-Id``
header of every answer, errors included, so a client, the proxy's log and this
log can be joined on it.

With ``SEQCAST_REQUEST_LOG`` on (the default) each request writes one line of
JSON to the ``seqcast.request`` logger (stderr)::

    {"time": "2026-12-01T16:40:02.113Z", "request_id": "4f0c...", "method": "POST",
     "route": "/v1/models/<name>/forecast", "status": 200, "ms": 1.83, "pid": 812,
     "model": "demo", "version": "20261201T...", "series": 3}

``route`` is the matched URL rule, not the path: bounded values, nothing a
client chose. ``model``, ``version`` and ``series`` appear when a model ran.
No header, body or key is ever logged.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import request

log = logging.getLogger("seqcast.request")

HEADER = "X-Request-Id"
ENVIRON_ID = "seqcast.request_id"
_ENVIRON_MODEL = "seqcast.model"
_TOKEN = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id(environ: dict[str, Any]) -> str:
    """The client's id when it is a plain token, else a new one; kept in the environ."""
    given = environ.get("HTTP_X_REQUEST_ID", "")
    rid = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
    environ[ENVIRON_ID] = rid
    return rid


def note_model(name: str, version: str, series: int) -> None:
    """Called by a view once its model has run: the request's line names them."""
    request.environ[_ENVIRON_MODEL] = (name, version, series)


def line(environ: dict[str, Any], method: str, route: str, status: int, seconds: float) -> bytes:
    """The JSON line of one finished request."""
    fields: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": environ.get(ENVIRON_ID),
        "method": method,
        "route": route,
        "status": status,
        "ms": round(seconds * 1000, 2),
        "pid": os.getpid(),
    }
    ran = environ.get(_ENVIRON_MODEL)
    if ran is not None:
        fields["model"], fields["version"], fields["series"] = ran
    return orjson.dumps(fields)
