"""The friendly JSON API under ``/v1``: list models, describe one, forecast."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, request
from pydantic import ValidationError

from service import forecast
from service.bundle import store
from service.bundle.manifest import Manifest, valid_name
from service.errors import Forbidden, InvalidRequest, ModelNotFound, Unauthorized, from_validation_error
from service.metrics import now
from service.payload import check_json_content_type, json_response, may_hold_bools, parse_json, read_body
from service.registry import Registry
from service.schemas import ForecastRequest
from service.settings import Settings
from service.state import state, state_in
from service.timeindex import parse_frequency

bp = Blueprint("v1", __name__, url_prefix="/v1")


def model_info(registry: Registry, name: str) -> dict[str, Any]:
    """What a client needs to call a model (shape of ``ModelInfo``), without loading it."""
    served, failed = registry.served(name), registry.failed(name)
    current = store.read_current(registry.model_dir, name)
    info: dict[str, Any] = {
        "name": name,
        "status": "ready" if served else "failed" if failed else "not_loaded",
        "version": served.version if served else current,
        "current": current,
        "versions": store.list_versions(registry.model_dir, name),
        "error": failed.error if failed else None,
        # Hot reload keeps serving the last good version when a new one fails to load.
        "failed_version": failed.version if failed else None,
    }
    manifest: Manifest | None = served.manifest if served else None
    if manifest is None and current is not None:
        try:
            manifest = store.load_manifest(store.bundle_dir(registry.model_dir, name, current))
        except store.StoreError as exc:
            info["status"], info["error"] = "failed", str(exc)
    if manifest is not None:
        info.update(
            created=manifest.created.isoformat(),
            spec=manifest.spec.model_dump(),
            timestamps_supported=parse_frequency(manifest.spec.frequency) is not None,
            metrics=manifest.metrics.model_dump() if manifest.metrics else None,
        )
    return info


@bp.get("/models")
def list_models() -> Response:
    registry = state().registry
    return json_response({"models": [model_info(registry, n) for n in registry.names()]})


@bp.get("/models/<name>")
def get_model(name: str) -> Response:
    registry = state().registry
    if not valid_name(name) or store.read_current(registry.model_dir, name) is None:
        raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
    return json_response(model_info(registry, name))


def require_admin(settings: Settings) -> None:
    """401 without, 403 with a wrong ``Authorization: Bearer <key>`` when an admin key is set."""
    if settings.admin_key is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("this route needs the admin key: send 'Authorization: Bearer <key>'")
    if not hmac.compare_digest(given.strip().encode(), settings.admin_key.get_secret_value().encode()):
        raise Forbidden("wrong admin key")


@bp.post("/models/<name>/reload")
def reload_view(name: str) -> Response:
    """Check CURRENT now (in this worker; the others on their next poll) and retry a failed version."""
    app_state = state()
    require_admin(app_state.settings)
    registry = app_state.registry
    if not valid_name(name) or store.read_current(registry.model_dir, name) is None:
        raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
    registry.load(name, retry_failed=True)
    return json_response(model_info(registry, name))


@bp.post("/models/<name>/forecast")
def forecast_view(name: str) -> Response:
    """Forecast one series or many in one model call; see ``ForecastRequest``."""
    environ = request.environ
    app_state = state_in(environ)
    served = app_state.registry.get(name)  # 404 / 503 before reading the body
    settings = app_state.settings
    check_json_content_type(environ)  # 415
    data = read_body(settings.max_body_bytes, environ)  # 413
    raw = parse_json(data)  # 400
    limit = settings.max_series
    if isinstance(raw, dict) and isinstance(raw.get("series"), list) and len(raw["series"]) > limit:
        # Refuse before pydantic builds (say) 500,000 tiny series only to count them.
        raise InvalidRequest.at(["series"], f"{len(raw['series'])} series, at most {limit} per request")
    try:
        req = ForecastRequest.model_validate(raw)
    except ValidationError as exc:
        # The values' type check is not pydantic's (see SeriesIn): report it in the same round.
        extra = forecast.values_list_problems(forecast.raw_values(raw))
        raise from_validation_error(exc, extra) from None
    manifest = served.manifest
    horizon = forecast.check_options(req, manifest)
    bool_free = not may_hold_bools(data)
    batch = forecast.prepare(req, manifest, horizon, bool_free)  # 422 with every bad series
    started = now()
    y = served.predictor.predict(batch.x)  # (batch, horizon, targets)
    app_state.metrics.observe_prediction(name, served.version, len(req.series), now() - started)
    return json_response(
        forecast.answer(manifest, req, batch, y), headers={"X-Model-Version": served.version}
    )
