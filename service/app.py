"""The app factory: ``create_app(settings=None, loader=None)``.

gunicorn runs ``'service:create_app()'``; tests pass settings (and a stand-in
loader) instead of patching globals. Building the app reads settings and
registers routes; it loads no model (see ``service.registry``).
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from service import api, auth, errors, ops, requestlog, v2
from service import state as app_state
from service.batching import BatchingPredictor
from service.bundle.predictor import OnnxPredictor
from service.metrics import Metrics, now
from service.registry import Loader, Registry
from service.settings import Settings, load_settings, unknown_variables

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
log = logging.getLogger("seqcast")


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("seqcast")
    logger.setLevel(level.upper())
    # gunicorn configures only its own loggers; add a handler unless someone
    # (pytest, an embedding application) already routes records from the root.
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
        )
        logger.addHandler(handler)
        # request lines are JSON already (service.requestlog): written as they are, one per line
        lines = logging.StreamHandler(sys.stderr)
        lines.setFormatter(logging.Formatter("%(message)s"))
        requests = logging.getLogger(requestlog.log.name)
        requests.addHandler(lines)
        requests.propagate = False


def _instrument(app: Flask, metrics: Metrics, request_log: bool) -> None:
    """Count and time every request by route template (bounded label values), give it a request
    id (``X-Request-Id``), and write its JSON log line (``service.requestlog``).

    A WSGI wrapper, not Flask hooks: it sees every response (error handlers
    included) and costs a fraction of a ``before/after_request`` pair with their
    context-local lookups.
    """
    inner = app.wsgi_app

    def timed(environ: dict[str, Any], start_response: Any) -> Any:
        started = now()
        rid = requestlog.request_id(environ)
        seen: list[tuple[str, Any]] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            # Flask starts the response while its request (and the matched rule) is
            # still in the environ; it clears it once the request context is popped.
            seen.append((status, getattr(environ.get("werkzeug.request"), "url_rule", None)))
            return start_response(status, [*headers, (requestlog.HEADER, rid)], exc_info)

        result = inner(environ, capture)
        status, rule = seen[0] if seen else ("500", None)
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in _METHODS else "OTHER"
        route = rule.rule if rule is not None else "<unmatched>"
        code = int(status[:3])
        seconds = now() - started
        metrics.observe_request(route, method, code, seconds)
        if request_log and requestlog.log.isEnabledFor(logging.INFO):
            requestlog.log.info(requestlog.line(environ, method, route, code, seconds).decode())
        return result

    app.wsgi_app = timed  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, loader: Loader | None = None) -> Flask:
    """Build the Flask app. ``loader`` turns a bundle directory into a Predictor (default: onnxruntime)."""
    settings = settings if settings is not None else load_settings()
    _configure_logging(settings.log_level)
    for name in unknown_variables():
        log.warning("ignoring unknown setting %s (a typo?)", name)
    app = Flask(__name__.split(".")[0], static_folder="static", static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.url_map.strict_slashes = False

    metrics = Metrics(settings.metrics_flush_seconds)
    load = loader or partial(
        OnnxPredictor.load, intra_op_threads=settings.intra_op, shrink_batch=settings.arena_shrink_batch
    )
    registry = Registry(
        settings.model_dir,
        _batching(load, settings, metrics) if settings.batch_max_size > 1 else load,
        on_swap=metrics.model_swapped,
        on_fail=metrics.load_failed,
    )
    keys = auth.from_settings(settings)
    app_state.init_app(app, app_state.State(settings, registry, metrics, keys))

    errors.init_app(app)
    app.before_request(lambda: keys.check(request))  # 401/403/429 where a key is set for the route
    if settings.proxy_hops:
        # the client address (throttling) is the one the trusted proxies forwarded
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    _instrument(app, metrics, settings.request_log)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(v2.bp)
    return app


def _batching(load: Loader, settings: Settings, metrics: Metrics) -> Loader:
    """The loader, its predictors wrapped for adaptive batching (``service.batching``)."""

    def loaded(bundle: Path) -> BatchingPredictor:
        name = bundle.parent.name
        return BatchingPredictor(
            load(bundle),
            settings.batch_max_size,
            settings.batch_max_delay_ms / 1000,
            lambda requests, series, waits: metrics.observe_batch(name, requests, series, waits),
        )

    return loaded


def load_models(app: Flask) -> None:
    """Load and warm up every published model in this process, then poll CURRENT and flush metrics.

    gunicorn calls this in each worker after fork (``post_worker_init``): the
    background threads must start in the process that serves.
    """
    found = app_state.state_of(app)
    if found is not None:
        found.registry.load_all()
        found.registry.start_polling(found.settings.poll_seconds)
        found.metrics.start_flushing()


def stop_background(app: Flask | None) -> None:
    """Stop polling and write the last metric tallies; gunicorn calls this as a worker exits."""
    found = app_state.state_of(app)
    if found is not None:
        found.metrics.stop_flushing()  # first: stopping the poller may wait for a model load
        found.registry.stop_polling()
