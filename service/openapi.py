"""The OpenAPI 3.1 document, generated from the pydantic models that validate requests.

Paths are listed here by hand (Flask routes carry no schemas); every schema
comes from ``service.schemas`` / ``service.schemas_v2``, so the document cannot
drift from what the service accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Map

from service import schemas as s1
from service import schemas_v2 as s2
from service.auth import SCOPES, Scope
from service.bundle.manifest import ModelSpec
from service.settings import Settings

_REF = "#/components/schemas/{model}"
_REQUESTS: list[type[BaseModel]] = [s1.ForecastRequest, s2.InferRequest]
_RESPONSES: list[type[BaseModel]] = [
    s1.ForecastResponse,
    s1.ModelList,
    s1.ModelInfo,
    s1.Health,
    s1.Readiness,
    s1.ErrorResponse,
    s2.InferResponse,
    s2.ModelMetadata,
    s2.ServerMetadata,
    s2.V2Error,
    s2.Live,
    s2.Ready,
    s2.ModelReady,
]

FORECAST_EXAMPLE = {
    "series": [
        {
            "id": "store-7",
            "values": [112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118],
            "start": "1949-01-01",
        }
    ],
    "horizon": 3,
    "levels": [80, 95],
}
INFER_EXAMPLE = {"inputs": [{"name": "x", "shape": [1, 3, 1], "datatype": "FP32", "data": [112, 118, 132]}]}
_ERRORS_V1 = {
    "400": "malformed JSON",
    "408": "the body stalled for SEQCAST_READ_TIMEOUT",
    "404": "unknown model",
    "413": "body over SEQCAST_MAX_BODY_BYTES",
    "415": "Content-Type is not application/json",
    "422": "a field is invalid: details name it and why",
    "503": "the model is not loaded",
}
_KEY_ERRORS = {
    "401": "a key is set for this route and none was sent",
    "403": "wrong key",
    "429": "too many wrong keys from this client lately (Retry-After)",
}
_ERRORS_V2 = {
    "400": "bad request",
    "408": "the body stalled for SEQCAST_READ_TIMEOUT",
    "404": "unknown model or version",
    "413": "body too large",
    "415": "unsupported Content-Type",
    "503": "the model is not loaded",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _op(
    summary: str,
    ok: type[BaseModel],
    errors: dict[str, str],
    tag: str,
    falsy: type[BaseModel] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One operation: ``ok`` on 200, the tag's error model on each of ``errors``; ``falsy``: a V2
    health or readiness answer, which the protocol sends with 400 when it is false."""
    err = s2.V2Error if tag == "v2" else s1.ErrorResponse
    responses = {"200": _json(ok)} | {code: _json(err, text) for code, text in errors.items()}
    if falsy is not None:
        responses["400"] = _json(falsy, "false: not ready")
    return {"summary": summary, "tags": [tag], "responses": responses, **extra}


def _body(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model), "example": example}}}


def _name(*, version: bool = False) -> list[dict[str, Any]]:
    params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if version:
        params.append({"name": "version", "in": "path", "required": True, "schema": {"type": "string"}})
    return params


def _v2_model_paths(suffix: str, version: bool) -> dict[str, Any]:
    base = "/v2/models/{name}" + ("/versions/{version}" if version else "")
    p = _name(version=version)
    return {
        base: {
            "get": _op(
                "model metadata (V2)", s2.ModelMetadata, {"404": _ERRORS_V2["404"]}, "v2", parameters=p
            )
        },
        base + "/ready": {
            "get": _op(
                "model ready (V2): 200 true, 400 false",
                s2.ModelReady,
                {"404": "unknown"},
                "v2",
                falsy=s2.ModelReady,
                parameters=p,
            )
        },
        base + "/infer": {
            "post": _op(
                "infer (V2): x FP32 [batch, time, features] -> y FP32 [batch, horizon, targets]" + suffix,
                s2.InferResponse,
                _ERRORS_V2,
                "v2",
                parameters=p,
                requestBody=_body(s2.InferRequest, INFER_EXAMPLE),
            )
        },
    }


def _report_op(summary: str, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A report route: the file itself on 200 (HTML, PNG, JSON or text), the v1 error otherwise."""
    kinds = ("text/html", "image/png", "application/json", "text/plain")
    errors = {"404": "unknown model, or no such report file", "503": _ERRORS_V1["503"]}
    return {
        "summary": summary,
        "tags": ["v1"],
        "parameters": _name() + (extra or []),
        "responses": {"200": {"description": "the file", "content": {k: {} for k in kinds}}}
        | {code: _json(s1.ErrorResponse, text) for code, text in errors.items()},
    }


_SCHEMES: dict[Scope, list[str]] = {
    "api": ["apiKey", "apiKeyHeader"],
    "metrics": ["metricsKey"],
    "admin": ["adminKey"],
}


def path_of(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/v1/models/<name>/report/<path:file>`` ->
    ``/v1/models/{name}/report/{file}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def scopes(url_map: Map) -> dict[str, Scope]:
    """Documented path -> the key scope ``service.auth`` guards its endpoint with (one table,
    ``auth.SCOPES``, for the guard and the document)."""
    return {path_of(r.rule): SCOPES[r.endpoint] for r in url_map.iter_rules() if r.endpoint in SCOPES}


class Served(NamedTuple):
    """A model as the document describes it: name, served version, spec."""

    name: str
    version: str
    spec: ModelSpec


def _history(spec: ModelSpec) -> list[Any]:
    """A history the model accepts: its window of a gentle monthly-looking pattern, as rows when it
    reads several features."""
    base = FORECAST_EXAMPLE["series"][0]["values"]  # type: ignore[index]
    values = [base[i % len(base)] for i in range(spec.input_window.length)]
    if len(spec.features) == 1:
        return values
    return [[v] * len(spec.features) for v in values]


def _examples(models: list[Served]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per model, a forecast and a V2 infer request that it answers with a 200 (the OpenAPI
    ``examples`` of both bodies: a generated client, the docs page and schemathesis start there)."""
    forecast, infer = {}, {}
    for m in models:
        history = _history(m.spec)
        window, features = m.spec.input_window.length, len(m.spec.features)
        summary = f"{m.name}: window {window}, {features} feature(s), horizon {m.spec.horizon}"
        forecast[m.name] = {"summary": summary, "value": {"series": [{"id": "example", "values": history}]}}
        flat = [v for row in history for v in (row if isinstance(row, list) else [row])]
        tensor = {"name": m.spec.input_name, "shape": [1, window, features], "datatype": "FP32", "data": flat}
        infer[m.name] = {"summary": summary, "value": {"inputs": [tensor]}}
    return forecast, infer


def _fit_to(doc: dict[str, Any], models: list[Served]) -> None:
    """Narrow the document to the models this server serves: their names and versions as the path
    parameters' values, their shortest history as the least a series may hold, and a request body
    example per model, so requests built from the document reach the models instead of a 404."""
    if not models:
        return
    names, versions = sorted(m.name for m in models), sorted({m.version for m in models})
    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] == "name":
                    param["schema"] = {"type": "string", "enum": names}
                elif param["name"] == "version":
                    param["schema"] = {"type": "string", "enum": versions}
    schemas = doc["components"]["schemas"]
    shortest = min(m.spec.input_window.min_length for m in models)
    values = schemas["SeriesIn"]["properties"]["values"]
    for alternative in values["oneOf"]:
        alternative["minItems"] = shortest
    features = {len(m.spec.features) for m in models}
    if features == {1}:  # plain numbers only: rows are for several features
        values["oneOf"] = values["oneOf"][:1]
    elif len(features) == 1:  # rows of exactly that many numbers only
        rows = values["oneOf"][1]
        rows["items"]["minItems"] = rows["items"]["maxItems"] = features.pop()
        values["oneOf"] = [rows]
    horizon = schemas["ForecastRequest"]["properties"]["horizon"]["anyOf"][0]
    horizon["maximum"] = min(m.spec.horizon for m in models)
    forecast, infer = _examples(models)
    for path, examples in (("/v1/models/{name}/forecast", forecast), ("/v2/models/{name}/infer", infer),
                           ("/v2/models/{name}/versions/{version}/infer", infer)):  # fmt: skip
        content = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        content["examples"] = examples
        content["example"] = next(iter(examples.values()))["value"]  # the docs page shows the first


def build(
    settings: Settings, guarded: Mapping[str, Scope], models: list[Served] | None = None
) -> dict[str, Any]:
    """The document, with this deployment's limits filled in, the key scope of each ``guarded``
    path (``scopes``), narrowed to ``models`` when given."""
    pairs = [(m, "validation") for m in _REQUESTS] + [(m, "serialization") for m in _RESPONSES]
    _, top = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    components = top["$defs"]
    components["ForecastRequest"]["properties"]["series"]["maxItems"] = settings.max_series
    paths: dict[str, Any] = {
        "/v1/models": {"get": _op("list models", s1.ModelList, {}, "v1")},
        "/v1/models/{name}": {
            "get": _op("describe one model", s1.ModelInfo, {"404": "unknown model"}, "v1", parameters=_name())
        },
        "/v1/models/{name}/forecast": {
            "post": _op(
                "forecast one series or many (one model call)",
                s1.ForecastResponse,
                _ERRORS_V1,
                "v1",
                parameters=_name(),
                requestBody=_body(s1.ForecastRequest, FORECAST_EXAMPLE),
                description="History longer than the model's window is cut to its tail; shorter is a 422 "
                "that names the minimum. The answer carries the version (also in X-Model-Version).",
            )
        },
        "/v1/models/{name}/reload": {
            "post": _op(
                "re-read CURRENT now in the worker that answers (the others on their next poll) and retry a "
                "failed version",
                s1.ModelInfo,
                {
                    "401": "an admin key is set and none was sent",
                    "403": "wrong admin key",
                    "404": "unknown model",
                },
                "v1",
                parameters=_name(),
            )
        },
        "/v1/models/{name}/report": {
            "get": _report_op("the served version's training report: one HTML page")
        },
        "/v1/models/{name}/report/{file}": {
            "get": _report_op(
                "another file of the served version's report folder (.png, .json, .txt); nothing outside it",
                [{"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/healthz": {"get": _op("liveness: the process answers", s1.Health, {}, "ops")},
        "/readyz": {
            "get": _op(
                "readiness: every model loaded and warmed up",
                s1.Readiness,
                {"503": "not ready; details say which model and why"},
                "ops",
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["ops"],
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v2": {"get": _op("server metadata (V2)", s2.ServerMetadata, {}, "v2")},
        "/v2/health/live": {"get": _op("server live (V2)", s2.Live, {}, "v2")},
        "/v2/health/ready": {
            "get": _op("server ready (V2): 200 true, 400 false", s2.Ready, {}, "v2", falsy=s2.Ready)
        },
    }
    paths |= _v2_model_paths("", version=False)
    paths |= _v2_model_paths(" (one version)", version=True)
    for path, item in paths.items():
        scope = guarded.get(path)
        if scope is not None:
            for op in item.values():
                # a key of the scope, or none at all while none is set for it (the empty requirement)
                op["security"] = [{scheme: []} for scheme in _SCHEMES[scope]] + [{}]
                err = s2.V2Error if path.startswith("/v2") else s1.ErrorResponse
                for code, text in _KEY_ERRORS.items():
                    op["responses"].setdefault(code, _json(err, text))
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Seqcast",
            "version": "1",
            "description": "Recurrent-network forecasts from versioned ONNX bundles. Errors under /v1 are "
            '{"error": {"code", "message", "details": [{"loc", "msg"}]}}; under /v2 {"error": "..."}.',
        },
        "tags": [
            {"name": "v1", "description": "forecast API"},
            {"name": "v2", "description": "KServe V2"},
            {"name": "ops", "description": "health and metrics"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SEQCAST_API_KEYS (or the admin key); open while none is set",
                },
                "apiKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "the same keys in an X-API-Key header",
                },
                "metricsKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SEQCAST_METRICS_KEY (or the admin key); open while unset",
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SEQCAST_ADMIN_KEY; open while unset",
                },
            },
        },
    }
    _fit_to(doc, models or [])
    return doc
