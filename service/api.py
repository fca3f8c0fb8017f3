"""The friendly JSON API under ``/v1``: list models, describe one, forecast."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response
from werkzeug.security import safe_join

from service import forecast, requestlog
from service.bundle import store
from service.bundle.manifest import Intervals, Manifest, ModelSpec
from service.bundle.timeindex import parse_frequency
from service.errors import ModelNotFound, ReportNotFound
from service.metrics import now
from service.payload import model_response, read_json
from service.registry import Registry
from service.schemas import IntervalsInfo, KnownInfo, ModelInfo, ModelList, ModelStatus
from service.state import state

bp = Blueprint("v1", __name__, url_prefix="/v1")


def model_info(registry: Registry, name: str) -> ModelInfo:
    """What a client needs to call a model, without loading it."""
    served, failed = registry.served(name), registry.failed(name)
    wanted = registry.wanted(name)
    current = wanted.version
    status: ModelStatus = "ready" if served else "failed" if failed else "not_loaded"
    error = failed.error if failed else None if current else f"CURRENT is {wanted.problem}"
    manifest: Manifest | None = served.manifest if served else None
    if manifest is None and current is not None:
        try:
            manifest = store.load_manifest(store.bundle_dir(registry.model_dir, name, current))
        except store.StoreError as exc:
            status, error = "failed", registry.public_error(exc)
    return ModelInfo(
        name=name,
        status=status,
        version=served.version if served else current,
        current=current,
        versions=store.list_versions(registry.model_dir, name),
        error=error,
        # Hot reload keeps serving the last good version when a new one fails to load.
        failed_version=failed.version if failed else None,
        created=manifest.created if manifest else None,
        spec=manifest.spec if manifest else None,
        timestamps_supported=manifest is not None and parse_frequency(manifest.spec.frequency) is not None,
        min_history=manifest.spec.input_window.min_length if manifest else None,
        known=_known_info(manifest.spec) if manifest and manifest.spec.known else None,
        max_horizon=manifest.spec.horizon if manifest else None,
        metrics=manifest.metrics if manifest else None,
        selection=manifest.selection if manifest else None,
        intervals=_intervals_info(manifest.intervals) if manifest and manifest.intervals else None,
    )


def _intervals_info(iv: Intervals) -> IntervalsInfo:
    return IntervalsInfo(
        method=iv.method,
        scale=iv.scale,
        windows=iv.windows,
        errors=iv.errors,
        max_level=iv.max_level,
        levels=iv.levels if iv.method == "quantile" else None,
        series=len(iv.series),
    )


@bp.get("/models")
def list_models() -> Response:
    registry = state().registry
    return model_response(ModelList(models=[model_info(registry, n) for n in registry.names()]))


@bp.get("/models/<name>")
def get_model(name: str) -> Response:
    registry = state().registry
    if not registry.published(name):
        raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
    return model_response(model_info(registry, name))


REPORT_DIR = "report"
# The page is one file with its images inline: it may load nothing from anywhere.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
REPORT_TYPES = {".html": "text/html", ".png": "image/png", ".json": "application/json", ".txt": "text/plain"}


@bp.get("/models/<name>/report")
@bp.get("/models/<name>/report/<path:file>")
def report_view(name: str, file: str = "index.html") -> Response:
    """The served version's training report, read-only: ``report/index.html`` or another file of
    that folder. Nothing outside the bundle's report folder can be named (no ``..``, no absolute
    path, no symlink that leads out of it)."""
    registry = state().registry
    served = registry.get(name)  # 404 / 503 like a forecast
    folder = store.bundle_dir(registry.model_dir, name, served.version) / REPORT_DIR
    path = safe_join(str(folder), file)
    kind = REPORT_TYPES.get(Path(file).suffix.lower())
    if path is None or kind is None:
        raise ReportNotFound(
            f"no report file {file!r}: the report holds index.html and its .png, .json, .txt files"
        )
    target = Path(path)
    try:
        inside = target.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
        body = target.read_bytes() if inside and target.is_file() else None
    except OSError:
        body = None
    if body is None:
        raise ReportNotFound(f"model {name!r} version {served.version} has no report file {file!r}")
    headers = {"X-Model-Version": served.version, "Content-Security-Policy": REPORT_CSP}
    return Response(body, mimetype=kind, headers=headers)


@bp.post("/models/<name>/reload")
def reload_view(name: str) -> Response:
    """Check CURRENT now (in this worker; the others on their next poll) and retry a failed version."""
    registry = state().registry  # the admin key, when one is set, was checked (service.auth)
    if not registry.published(name):
        raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
    registry.load(name, retry_failed=True)
    return model_response(model_info(registry, name))


@bp.post("/models/<name>/forecast")
def forecast_view(name: str) -> Response:
    """Forecast one series or many in one model call; see ``ForecastRequest``."""
    app_state = state()
    served = app_state.registry.get(name)  # 404 / 503 before reading the body
    raw = read_json(app_state.settings.max_body_bytes, app_state.settings.read_timeout)  # 415/413/408/400
    manifest = served.manifest
    req = forecast.parse_request(raw, manifest.spec, app_state.settings.max_series)  # 422
    horizon = forecast.check_options(req, manifest)  # 422
    batch = forecast.prepare(req, manifest, horizon)  # 422 naming every bad series
    started = now()
    # (batch, horizon, targets); a quantile head's bounds too when levels are asked
    y, learned = forecast.predict(served.predictor, batch, bool(req.levels))
    app_state.metrics.observe_prediction(name, served.version, len(req.series), now() - started)
    requestlog.note_model(name, served.version, len(req.series))
    body = forecast.answer(manifest, req, batch, y, learned)  # 422 if a forecast is not finite
    return Response(body, mimetype="application/json", headers={"X-Model-Version": served.version})


def _known_info(spec: ModelSpec) -> KnownInfo:
    known = spec.known
    assert known is not None
    return KnownInfo(
        future=known.future,
        calendar=known.calendar,
        holidays=known.holidays,
        needs_dates=bool(known.calendar),
        needs_full_horizon=bool(known.future) and not spec.causal,
        sent=spec.sent,
    )
