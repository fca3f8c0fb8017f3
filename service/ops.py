"""Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document and its docs page."""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, current_app, redirect

from service import openapi
from service.errors import NotReady
from service.payload import model_response
from service.schemas import FailedLoad, Health, Readiness
from service.state import state

bp = Blueprint("ops", __name__)

# The docs page loads only its own script and style, and talks only to this server.
_DOCS_CSP = "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:"


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers: nothing else is checked (a liveness probe must not restart a loading worker)."""
    return model_response(Health())


@bp.get("/readyz")
def readyz() -> Response:
    """200 once every published model serves a valid version (CURRENT's, or the last good one
    while CURRENT is bad: ``served`` and ``wanted`` differ then); 503 (error shape) until then."""
    registry = state().registry
    if not registry.attempted:
        # Outside gunicorn nothing has loaded the models yet: do it now, unless
        # another thread already is (then answer 503 at once; a probe must not block).
        registry.load_all(blocking=False)
    ready, models, reason = registry.readiness()
    if not ready:
        details = [
            {"loc": ["models", name], "msg": (f.error if (f := registry.failed(name)) else status)}
            for name, status in models.items()
            if status != "ready"
        ]
        raise NotReady(reason or "not ready", details)
    served = {n: r.version for n in models if (r := registry.served(n)) is not None}
    wanted = {n: registry.wanted(n).version for n in models}
    failed = {n: FailedLoad(version=f.version, error=f.error) for n in models if (f := registry.failed(n))}
    return model_response(Readiness(ready=True, models=models, served=served, wanted=wanted, failed=failed))


@bp.get("/metrics")
def metrics() -> Response:
    text, content_type = state().metrics.render()
    return Response(text, content_type=content_type)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    # Built again only when the served models change: it depends on them (names, versions, windows,
    # examples), the settings and the code.
    registry = state().registry
    if not registry.attempted:
        registry.load_all(blocking=False)
    served = [
        openapi.Served(n, r.version, r.manifest.spec) for n in registry.names() if (r := registry.served(n))
    ]
    key = tuple((m.name, m.version) for m in served)
    cache = current_app.extensions.setdefault("seqcast_openapi", {})
    if cache.get("key") != key:
        doc = openapi.build(state().settings, openapi.scopes(current_app.url_map), served)
        cache["doc"], cache["key"] = orjson.dumps(doc), key
    return Response(cache["doc"], mimetype="application/json")  # a document, not a model


@bp.get("/docs")
def docs() -> Response:
    response = current_app.send_static_file("docs.html")
    response.headers["Content-Security-Policy"] = _DOCS_CSP
    return response


@bp.get("/")
def index() -> Response:
    return redirect("/docs", code=302)  # type: ignore[return-value]
