"""Seqcast's default recipe on one benchmark set, as a user gets it.

The config names only the data, the test split and the horizon (``split.test =
window.horizon = h``) and the seed; ``training.recipe.resolve`` chooses the
rest. The model is trained with ``train_run``, exported with ``export_run``,
and the test points are forecast through the exported ONNX predictor from the
last input window before the test split. How a set becomes a config lives in
``config_for``; how panels are run can change there alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.protocol import LEVELS, DataSet, Series
from service.bundle import intervals

log = logging.getLogger("bench.seqcast")

# Sets the trainer cannot run yet, and why: delete a line to run that set.
PENDING: dict[str, str] = {}  # us_employment (148 series, long format) trains as one global model now


class Pending(RuntimeError):
    """The trainer cannot run this set yet (see PENDING)."""


@dataclass
class SeqcastResult:
    forecast: np.ndarray  # (series, h) in the order of the benchmark's series
    train_s: float  # train_run: loading, resolving, the recipe's choice and fitting
    export_s: float  # export_run: ONNX export, parity check, scoring, report files
    chosen: str  # what the recipe chose (the manifest's selection)
    resolved: dict[str, Any] = field(default_factory=dict)  # the split and window the recipe resolved
    bands: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # level -> (lower, upper)
    short: dict[int, np.ndarray] = field(default_factory=dict)  # history length -> forecast (series, h)


def config_for(
    s: DataSet,
    path: Path,
    seed: int,
    threads: int | None,
    model: dict[str, Any] | None = None,
    data_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The user's config: only the data, the holdout and the horizon (and the machine it runs on);
    ``model``: a hand-written ``[model]`` section (and ``min_history``, ``stride``) instead of the
    recipe; ``data_options``: more of ``[data]`` (inputs known in advance: ``future``, ``calendar``)."""
    data: dict[str, Any] = {"path": str(path), "timestamp": "timestamp", **(data_options or {})}
    if s.targets:
        data["targets"] = list(s.targets)  # covariate files: the target alone, univariately
    if s.layout == "long":
        data.update(layout="long", series_id="series_id")
    # Wide files with several value columns (uschange, arrivals, visnights): one multi-target config.
    model = dict(model or {})
    window: dict[str, Any] = {"horizon": s.h}
    for key in ("min_history", "stride"):  # [window] options of a hand-written model
        if key in model:
            window[key] = model.pop(key)
    return {
        "data": data,
        "split": {"test": s.h},
        "window": window,
        "train": {"seed": seed},
        # Where it runs, not what it trains: one thread keeps runs reproducible and the machine shared.
        "machine": {"threads": threads, "progress": False},
    } | ({"model": model} if model else {})


def seqcast_forecast(
    s: DataSet,
    series: list[Series],
    root: Path,
    seed: int,
    threads: int | None = 1,
    model: dict[str, Any] | None = None,
    contexts: tuple[int, ...] = (),
    data_options: dict[str, Any] | None = None,
) -> SeqcastResult:
    """Train the default recipe (or the hand-written ``model``) on set ``s`` and forecast its test
    points through the ONNX bundle; ``contexts``: also from only the last few points before the
    test, for each of these history lengths (``SeqcastResult.short``)."""
    if s.name in PENDING:
        raise Pending(PENDING[s.name])
    from training.config import Config  # torch and the trainer only when Seqcast runs
    from training.pipeline import export_run, train_run
    from training.windows import model_input

    cfg = Config.model_validate(config_for(s, root / s.file, seed, threads, model, data_options))
    t0 = time.perf_counter()
    run = train_run(cfg)
    train_s = time.perf_counter() - t0
    exported = export_run(run)
    export_s = time.perf_counter() - t0 - train_s

    ds, spec = run.dataset, exported.predictor.spec
    length = spec.input_window.length
    # The last input window before the test split, from the data as loaded: (series, length, features)
    # (with inputs known in advance, theirs read a horizon ahead, as the service builds it)
    x = np.stack([model_input(sx.values, len(sx.values) - s.h, length, s.h, len(ds.now)) for sx in ds.series])
    y = exported.predictor.predict(x)  # (series, h, targets)
    calibration = exported.manifest.intervals
    assert calibration is not None  # every exported bundle is calibrated
    # each series by its id, as a client would send it: a panel's series get their own widths
    factors = intervals.series_factors(calibration, [sx.id for sx in ds.series])
    bounds = intervals.bounds(calibration, x, y, LEVELS, factors=factors)  # per level (lower, upper), like y

    def rows(a: np.ndarray) -> dict[str, np.ndarray]:
        """Benchmark series id -> its (h,) row of ``a`` (series, h, targets)."""
        if len(ds.series) == 1 and len(ds.targets) > 1:  # one multi-target series: a target per series
            return {t: a[0, :, j] for j, t in enumerate(ds.targets)}
        if len(ds.series) == 1 and len(series) == 1:  # a univariate file: its one series, whatever its id
            return {series[0].id: a[0, :, 0]}
        return {sx.id: a[k, :, 0] for k, sx in enumerate(ds.series)}

    truth = rows(np.stack([sx.values[-s.h :, : len(ds.targets)] for sx in ds.series]))
    for sx in series:  # the trainer read the same test points as the protocol
        np.testing.assert_allclose(truth[sx.id], sx.split(s.h)[1], rtol=1e-5, err_msg=f"{s.name} {sx.id}")

    def ordered(a: np.ndarray) -> np.ndarray:  # (benchmark series, h), in the benchmark's order
        by_id = rows(a)
        return np.stack([by_id[sx.id] for sx in series]).astype(np.float64)

    bands = {level: (ordered(lo), ordered(up)) for level, (lo, up) in zip(LEVELS, bounds, strict=True)}
    short = {n: ordered(exported.predictor.predict(np.ascontiguousarray(x[:, -n:]))) for n in contexts}
    chosen = run.choice.chosen if run.choice is not None else "hand-written model"
    log.info("%s seed %d: %s, train %.1fs, export %.1fs", s.name, seed, chosen, train_s, export_s)
    return SeqcastResult(
        forecast=ordered(y),
        train_s=train_s,
        export_s=export_s,
        chosen=chosen,
        resolved={"split": run.config.split.model_dump(), "window": run.config.window.model_dump()},
        bands=bands,
        short=short,
    )
