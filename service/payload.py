"""Request bodies in, answers out: content type, size limit and orjson parsing; answers through their model.

orjson parses a 256-series body several times faster than ``json``. The one answer not written
by its model is the forecast's (``service.forecast.answer``: orjson from numpy, the same bytes,
checked by tests/test_intervals.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from flask import Response, request
from gunicorn.http.errors import ParseException
from pydantic import BaseModel
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

from service.errors import MalformedBody, MalformedJSON, RequestTimeout, UnsupportedMediaType

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def read_json(limit: int | None, timeout: float | None = None) -> Any:
    """The request's parsed JSON body: 415 unless declared as JSON, 413 past ``limit`` bytes, 408 if
    it stalls for ``timeout`` seconds, 400 if malformed."""
    environ = request.environ
    # The common header needs no parsing (werkzeug's costs a few microseconds).
    if environ.get("CONTENT_TYPE") != "application/json" and not is_json_mimetype(request.mimetype):
        got = request.mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"expected Content-Type: application/json, got {got}")
    return parse_json(read_body(limit, environ, timeout))


BLOCK = 64 * 1024  # bytes read at a time from a body of unknown length


def read_body(limit: int | None, environ: WSGIEnvironment, timeout: float | None = None) -> bytes:
    """The raw body; 413 past ``limit`` (the app's ``MAX_CONTENT_LENGTH``), declared or streamed;
    408 when no byte of it arrives for ``timeout`` seconds (``SEQCAST_READ_TIMEOUT``).

    Under gunicorn the connection's socket gets ``timeout`` while the body is
    read, whatever the worker class: a client that sends its headers and half a
    body otherwise holds a sync worker until gunicorn kills it, and a gthread
    thread for ever. The timeout is between two reads, as nginx's
    ``client_body_timeout``: a body that keeps arriving is read to its end.

    With a ``Content-Length`` and a server that bounds the input stream by it
    (``wsgi.input_terminated``: gunicorn) the body is read in one call.
    werkzeug would wrap the stream in a ``LimitedStream`` that reads it through
    several Python layers, which cost about 5 us, 2 % of a one-series forecast.
    A body without one (chunked) on such a server is read in blocks up to one
    byte past the limit: werkzeug's stream would stop at the limit without a
    word, so a longer body was cut (a 400 for broken JSON) or, if what came
    first was valid JSON, answered as if the rest were not there. Anything else
    (other servers) goes through werkzeug.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None or timeout is None:
        return _read(limit, environ)
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        return _read(limit, environ)
    except TimeoutError:
        # Nothing more is read from this connection: gunicorn would otherwise drain what is
        # left of the body before the next request (keep-alive), on a thread with no timeout.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
        raise RequestTimeout(
            f"the request body stalled: no byte for {timeout:g} s (SEQCAST_READ_TIMEOUT)"
        ) from None
    finally:
        sock.settimeout(previous)


def _read(limit: int | None, environ: WSGIEnvironment) -> bytes:
    length = get_content_length(environ)  # None when absent, invalid or chunked
    if environ.get("wsgi.input_terminated"):
        if length is None:
            return _read_unsized(environ["wsgi.input"], limit)
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        try:
            data: bytes = environ["wsgi.input"].read(length)
        except TimeoutError:
            raise
        except (OSError, ValueError):  # the client reset the connection mid-body (werkzeug's 400)
            raise ClientDisconnected() from None
        return data
    return request.get_data(cache=False)


def _read_unsized(stream: Any, limit: int | None) -> bytes:
    """A body of unknown length, to its end: 413 past ``limit``; 400 if its chunks are malformed."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            block: bytes = stream.read(BLOCK)
        except ParseException as exc:  # gunicorn's reader: a bad chunk size, a missing CRLF
            raise MalformedBody(f"malformed chunked body: {type(exc).__name__}") from None
        except TimeoutError:
            raise
        except (OSError, ValueError):  # the client went away mid-body
            raise ClientDisconnected() from None
        if not block:
            return b"".join(parts)
        size += len(block)
        if limit is not None and size > limit:
            raise RequestEntityTooLarge()
        parts.append(block)


def parse_json(data: bytes) -> Any:
    """Parse JSON bytes; 400 with orjson's position on malformed input.

    ``NaN``, ``Infinity`` and floats beyond float64 are not JSON, but Python's
    ``json.dumps`` writes them by default: those bodies are parsed by the
    standard library instead, so validation can answer 422 naming the value
    rather than 400 for the whole body.
    """
    if not data:
        raise MalformedJSON("empty body: send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        error = exc  # orjson's message names the line and column: what a client needs
    try:
        parsed = json.loads(data)
        # The standard library also takes lone surrogates, which no answer could echo.
        orjson.dumps(parsed)
    except (ValueError, RecursionError, TypeError, orjson.JSONEncodeError):
        raise MalformedJSON(f"malformed JSON: {error}") from None
    return parsed


def float_lists(arr: np.ndarray) -> Any:
    """A float32 array as (nested) lists of Python floats that print as float32's shortest form
    (``112.3``, not ``112.30000305175781``): orjson writes float32 that way and reads it back, in
    one C pass over the array. NaN and infinity come back as None."""
    return orjson.loads(orjson.dumps(np.ascontiguousarray(arr), option=orjson.OPT_SERIALIZE_NUMPY))


def model_response(
    answer: BaseModel, status: int = 200, headers: dict[str, str] | None = None, exclude_unset: bool = False
) -> Response:
    """``answer`` as JSON, serialised by its own model, so it matches the OpenAPI document.

    ``exclude_unset``: leave out the fields the view did not set (only fields with
    a default can be unset, so the answer still validates). Only for answers built
    entirely by the view: a nested model read from elsewhere (a manifest's spec)
    would lose the fields its source left at their defaults.
    """
    body = answer.model_dump_json(exclude_unset=exclude_unset)  # in Rust, one pass
    response = Response(body, status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
