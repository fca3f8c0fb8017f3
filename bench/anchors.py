"""The benchmark's anchors: naive, seasonal naive and statsforecast's AutoETS, AutoTheta, AutoARIMA.

The statsforecast models run with their defaults and ``season_length`` = the
set's season; for the half-hourly sets they fit only the last
``DataSet.anchor_tail`` in-sample points. On the half-hourly sets and on
us_employment's 148 series AutoARIMA uses ``approximation=True`` (R's
``auto.arima`` default for series longer than 150 or seasons above 12):
without it one fit of season 48 did not finish in 15 minutes, and
us_employment took 1.5 to 3 minutes a series. Their forecasts are cached under
``bench/.cache/anchors/`` by (input hash, series, h, season, method,
statsforecast version), because AutoARIMA takes minutes on some series.
AutoETS also gives its own 80 % and 95 % intervals (``INTERVALS_FROM``), which
the benchmark scores beside Seqcast's.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.protocol import CLASSICAL, LEVELS, DataSet, Series, data_hash, naive, seasonal_naive

log = logging.getLogger("bench.anchors")

CACHE = Path(__file__).resolve().parent / ".cache" / "anchors"
FAST: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "naive": lambda y, h, _m: naive(y, h),
    "snaive": seasonal_naive,
}
METHODS = (*FAST, *CLASSICAL)
INTERVALS_FROM = ("AutoETS",)  # anchors whose own prediction intervals are scored (protocol.LEVELS)


def statsforecast_version() -> str:
    try:
        return metadata.version("statsforecast")
    except metadata.PackageNotFoundError:
        return "absent"


@dataclass(frozen=True, eq=False)
class Task:
    """One classical anchor's forecast of one series."""

    set: str
    series: str
    method: str
    insample: np.ndarray  # what the model fits (the tail for sub-daily sets)
    h: int
    season: int
    options: tuple[tuple[str, object], ...] = ()  # keyword arguments beyond season_length
    levels: tuple[int, ...] = ()  # prediction-interval levels asked of the model, if any

    def key(self, version: str) -> str:
        parts = [data_hash(self.insample), self.set, self.series, self.h, self.season, self.method, version]
        parts += [list(o) for o in self.options]  # no options: the same key as before they existed
        if self.levels:  # likewise: a method asked for no intervals keeps its key
            parts.append(["levels", *self.levels])
        return data_hash(np.frombuffer(json.dumps(parts).encode(), dtype=np.uint8))

    def path(self, version: str) -> Path:
        return CACHE / self.set / f"{self.method}-{self.key(version)}.json"


def options(method: str, s: DataSet) -> tuple[tuple[str, object], ...]:
    """Settings beyond statsforecast's defaults: AutoARIMA's approximation where the exact search
    costs too much (``DataSet.approximate_arima``)."""
    return (("approximation", True),) if method == "AutoARIMA" and s.approximate_arima else ()


Bounds = dict[int, tuple[list[float], list[float]]]  # level -> (lower, upper) of one series, (h,) each


@dataclass
class Fitted:
    """One classical anchor's forecast of one series."""

    forecast: np.ndarray  # (h,)
    seconds: float
    bounds: Bounds  # empty unless the task asked for levels


def fit_classical(
    method: str, y: np.ndarray, h: int, season: int, levels: tuple[int, ...] = (), **kwargs: object
) -> tuple[np.ndarray, Bounds]:
    """One statsforecast model's point forecast ``(h,)`` and, for ``levels``, its own intervals."""
    from statsforecast import models  # the bench extra, in .venv-bench only

    model = getattr(models, method)(season_length=season, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numerical chatter of the model search
        out = model.forecast(y=np.asarray(y, dtype=np.float64), h=h, level=list(levels) or None)
    bounds = {
        lv: (np.asarray(out[f"lo-{lv}"]).tolist(), np.asarray(out[f"hi-{lv}"]).tolist()) for lv in levels
    }
    return np.asarray(out["mean"], dtype=np.float64), bounds


def _run(task: Task) -> Fitted:
    t0 = time.perf_counter()
    forecast, bounds = fit_classical(
        task.method, task.insample, task.h, task.season, task.levels, **dict(task.options)
    )
    return Fitted(forecast, time.perf_counter() - t0, bounds)


def _read(path: Path) -> Fitted | None:
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    bounds = {int(k): (v[0], v[1]) for k, v in cached.get("intervals", {}).items()}
    return Fitted(np.asarray(cached["forecast"], dtype=np.float64), float(cached["seconds"]), bounds)


def _write(path: Path, task: Task, fitted: Fitted, version: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "set": task.set,
        "series": task.series,
        "method": task.method,
        "h": task.h,
        "season": task.season,
        "points": len(task.insample),
        "options": dict(task.options),
        "statsforecast": version,
        "seconds": fitted.seconds,
        "forecast": fitted.forecast.tolist(),
        "intervals": {str(k): list(v) for k, v in fitted.bounds.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


def tasks(s: DataSet, series: Iterable[Series], methods: Iterable[str]) -> list[Task]:
    out = []
    for x in series:
        insample = x.split(s.h)[0]
        if s.anchor_tail:
            insample = insample[-s.anchor_tail :]
        out += [
            Task(
                s.name, x.id, m, insample, s.h, s.season, options(m, s), LEVELS if m in INTERVALS_FROM else ()
            )
            for m in methods
            if m in CLASSICAL
        ]
    return out


@dataclass
class Forecasts:
    """One method's forecasts of one set: ``values`` is ``(series, h)``; seconds spent fitting;
    ``bands``: level -> (lower, upper), each ``(series, h)``, for a method scored on its intervals."""

    values: np.ndarray
    seconds: float
    bands: dict[int, tuple[np.ndarray, np.ndarray]] | None = None


def forecast_sets(
    work: list[tuple[DataSet, list[Series]]], methods: Iterable[str], jobs: int = 1
) -> dict[str, dict[str, Forecasts]]:
    """method -> set -> forecasts; classical ones from the cache, or fitted (``jobs`` processes)."""
    methods = list(methods)
    version = statsforecast_version()
    by_set = {s.name: tasks(s, series, methods) for s, series in work}
    todo = [t for ts in by_set.values() for t in ts]
    found = {t: _read(t.path(version)) for t in todo}
    missing = [t for t in todo if found[t] is None]
    if missing:
        if version == "absent":
            raise RuntimeError(
                f"{len(missing)} anchor forecasts are not cached and statsforecast is not installed: "
                "run with .venv-bench (see docs/accuracy.md)"
            )
        log.warning("fitting %d classical anchor forecasts (statsforecast %s)", len(missing), version)
        if jobs > 1:
            with ProcessPoolExecutor(jobs) as pool:
                done = pool.map(_run, missing)
                for t, result in zip(missing, done, strict=True):
                    _write(t.path(version), t, result, version)
                    found[t] = result
                    log.info("  %s %s %s: %.1fs", t.set, t.series, t.method, result.seconds)
        else:
            for t in missing:
                result = _run(t)
                _write(t.path(version), t, result, version)
                found[t] = result
                log.info("  %s %s %s: %.1fs", t.set, t.series, t.method, result.seconds)
    out: dict[str, dict[str, Forecasts]] = {m: {} for m in methods}
    for s, series in work:
        for m in methods:
            if m in FAST:
                rows = [FAST[m](x.split(s.h)[0], s.h, s.season) for x in series]
                out[m][s.name] = Forecasts(np.stack(rows), 0.0)
        per_task = {(t.series, t.method): found[t] for t in by_set[s.name]}
        for m in methods:
            if m in CLASSICAL:
                got = [g for g in (per_task[(x.id, m)] for x in series) if g is not None]
                bands = None
                if m in INTERVALS_FROM:
                    bands = {
                        lv: (
                            np.stack([g.bounds[lv][0] for g in got]),
                            np.stack([g.bounds[lv][1] for g in got]),
                        )
                        for lv in LEVELS
                    }
                out[m][s.name] = Forecasts(
                    np.stack([g.forecast for g in got]), sum(g.seconds for g in got), bands
                )
    return out
