"""gunicorn's own error answers (a malformed request line, headers too large, a bad chunk
framing it meets before the app runs) as JSON in the service's error shape, not HTML.

gunicorn writes those answers with ``gunicorn.util.write_error``, called from
one place (``Worker.handle_error``) and looked up at call time, so replacing
that function in the master before any worker forks reaches every worker.
The body is ``{"error": {"code", "message", "details": []}}`` (the ``/v1``
shape: the request line may be unreadable, so the route is not known).
"""

from __future__ import annotations

import re
import socket

import orjson
from gunicorn import util

MAX_MESSAGE = 200  # gunicorn's message quotes the client's bytes: keep the answer short


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s signature and framing, with a JSON body."""
    code = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "bad_request"
    body = orjson.dumps({"error": {"code": code, "message": mesg[:MAX_MESSAGE], "details": []}})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


def install() -> None:
    util.write_error = write_json_error
