"""Typed errors that carry their HTTP status, and the one place that renders them.

Every error leaves the service as::

    {"error": {"code": "invalid_request", "message": "series[0].values: ...",
               "details": [{"loc": ["series", 0, "values"], "msg": "..."}]}}

``code`` is stable and machine-readable; ``message`` is for people; ``details``
lists field-level problems (empty when there are none). The KServe V2 routes
answer ``{"error": "<message>"}`` instead, as that protocol prescribes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from service.schemas import ErrorBody, ErrorDetail, ErrorResponse
from service.schemas_v2 import V2Error

log = logging.getLogger("seqcast.errors")

Loc = Sequence[str | int]
MAX_DETAILS = 20  # a 1,000-series request with 1,000 bad series needs no 1,000-line answer


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class MalformedJSON(ServiceError):
    status, code = 400, "malformed_json"


class MalformedBody(ServiceError):
    """The request body could not be read as HTTP framed it (a malformed chunked encoding)."""

    status, code = 400, "malformed_body"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidRequest(ServiceError):
    """422: the JSON is well-formed but a field is wrong; ``details`` say which and why."""

    status, code = 422, "invalid_request"

    @classmethod
    def at(cls, loc: Loc, msg: str) -> InvalidRequest:
        return cls(f"{format_loc(loc)}: {msg}", [{"loc": list(loc), "msg": msg}])

    @classmethod
    def from_details(cls, details: list[dict[str, Any]]) -> InvalidRequest:
        first = details[0]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return cls(f"{format_loc(first['loc'])}: {first['msg']}{more}", details[:MAX_DETAILS])


class ModelNotFound(ServiceError):
    status, code = 404, "model_not_found"


class ReportNotFound(ServiceError):
    status, code = 404, "report_not_found"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class RequestTimeout(ServiceError):
    """408: the request body stopped arriving (``SEQCAST_READ_TIMEOUT``)."""

    status, code = 408, "request_timeout"


class TooManyAttempts(ServiceError):
    """429: this client sent too many wrong keys lately (``Retry-After`` says when to try again)."""

    status, code = 429, "too_many_attempts"


def format_loc(loc: Loc) -> str:
    """``["series", 0, "values"]`` -> ``series[0].values``; ``[]`` -> ``body``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """A pydantic error as one detail per problem (``loc``, ``msg``), input values left out."""
    return [{"loc": list(e["loc"]), "msg": _message(e)} for e in exc.errors(include_url=False)]


def _message(error: Any) -> str:
    if error["type"] == "value_error":  # our own validators: drop pydantic's "Value error, " prefix
        return str(error["ctx"]["error"])
    if error["type"] in {"model_type", "model_attributes_type", "dict_type"}:
        return "expected a JSON object"
    return str(error["msg"])


# werkzeug's names, except where the current RFC 9110 name reads better.
_CODES = {413: "payload_too_large"}


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def render(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    """The error as an ``ErrorResponse`` (``V2Error`` under ``/v2``), serialised by its model."""
    answer: BaseModel
    if request.path.startswith("/v2"):
        answer = V2Error(error=message)
    else:
        found = [ErrorDetail.model_validate(d) for d in details or []]
        answer = ErrorResponse(error=ErrorBody(code=code, message=message, details=found))
    return Response(answer.model_dump_json(), status=status, mimetype="application/json")


def handle_service_error(exc: ServiceError) -> Response:
    response = render(exc.status, exc.code, exc.message, exc.details)
    response.headers.update(exc.headers)
    return response


def handle_http_exception(exc: HTTPException) -> Response:
    """werkzeug's 404/405/413/... as JSON; keeps headers such as ``Allow``."""
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 413:
        message = "request body too large"
        limit = request.max_content_length
        if limit:
            message += f": the limit is {limit} bytes"
    response = render(status, _CODES.get(status) or _snake(exc.name), message)
    for key, value in exc.get_headers():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def handle_unexpected(exc: Exception) -> Response:
    """Anything else is a bug on our side: log it, answer 500 without internals."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return render(500, "internal_error", "internal server error; the incident is logged")


def init_app(app: Flask) -> None:
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
