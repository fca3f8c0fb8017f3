"""Seqcast service: serves ONNX forecast bundles over HTTP (never imports torch).

``gunicorn 'service:create_app()'`` builds the app. The import is deferred so the
bundle contract (``service.bundle``) can be imported by the
trainer without flask installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the distribution's version too (pyproject reads it)

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings: Any = None) -> Flask:
    """Build the Flask app; see ``service.app.create_app``."""
    from service.app import create_app as _create_app

    return _create_app(settings)
