"""What the views share, kept in ``app.extensions['seqcast']`` (one per app, so tests can build many)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from service.auth import Auth
from service.metrics import Metrics
from service.registry import Registry
from service.settings import Settings

EXTENSION = "seqcast"


@dataclass(frozen=True)
class State:
    settings: Settings
    registry: Registry
    metrics: Metrics
    auth: Auth


def state() -> State:
    """The state of the app handling the current request."""
    found: State = current_app.extensions[EXTENSION]
    return found


def state_of(app: object) -> State | None:
    """The service state of an app, or None for another WSGI app (the gunicorn hooks use this)."""
    found = getattr(app, "extensions", {}).get(EXTENSION)
    return found if isinstance(found, State) else None


def init_app(app: Flask, value: State) -> None:
    app.extensions[EXTENSION] = value
