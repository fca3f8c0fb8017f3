"""The batch retraining job: train a challenger on fresh data, promote it only if it wins.

    seqcast retrain --config configs/demo.toml [--model-dir models] [--name demo]

1. Take the model's lock (``MODEL_DIR/<name>/.retrain.lock``, an ``flock``: the
   kernel drops it when the process dies, so a crashed job leaves nothing that
   the next run trips over; a second job at the same time exits with code 3).
2. Build the challenger's config: the champion's saved config (model, window,
   training) with the job's data, split, export and retrain sections; with no
   champion or ``retrain.config_from = "job"``, the job's config as it is.
3. Train the challenger; score it and the champion (its ONNX, through
   onnxruntime) on the same most recent holdout of the fresh data.
4. Promote (publish + CURRENT) only if ``challenger < champion x (1 - margin)``
   on ``retrain.metric``; with no champion, only if the challenger beats the
   seasonal-naive forecast.
5. Write a decision record (JSON) to ``MODEL_DIR/<name>/decisions/`` and print a
   one-line summary. Both outcomes exit 0; a failure exits non-zero and leaves
   CURRENT untouched (publishing is the last step and atomic).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle import store
from service.bundle.manifest import MODEL_FILE, Manifest, Metrics
from training.config import Config, WindowConfig
from training.data import Dataset
from training.evaluate import score
from training.export import INPUT, OUTPUT, session
from training.pipeline import export_run, train_run
from training.windows import make_windows

log = logging.getLogger("seqcast.retrain")
LOCK_FILE = ".retrain.lock"
DECISIONS = "decisions"
EXIT_LOCKED = 3


class LockHeld(RuntimeError):
    """Another retraining job for the same model is running."""


class RetrainError(RuntimeError):
    """The job cannot reach a sound decision (e.g. the champion cannot be scored)."""


@contextmanager
def model_lock(model_dir: Path, name: str) -> Iterator[None]:
    root = Path(model_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise LockHeld(f"another retrain job for {name!r} holds {path} ({holder})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def challenger_config(job: Config, champion: Manifest | None) -> Config:
    """The champion's model/window/train config with the job's data, split, export and retrain."""
    if champion is None or job.retrain.config_from == "job":
        return job
    raw = dict(champion.training_config)
    for section in ("data", "split", "export", "retrain"):
        raw[section] = getattr(job, section).model_dump(mode="json")
    return Config.model_validate(raw)


def score_onnx(onnx_bytes: bytes, manifest: Manifest, ds: Dataset, cfg: Config, season: int) -> Metrics:
    """Score an ONNX model with onnxruntime on the test split of ``ds``.

    Champion and challenger are both scored this way, on the artifact that
    would be served, so a tie is a tie (no torch-vs-onnxruntime float noise).
    """
    if manifest.features != ds.features:
        raise RetrainError(f"champion features {manifest.features} differ from the data's {ds.features}")
    if manifest.horizon != cfg.window.horizon:
        raise RetrainError(f"champion horizon {manifest.horizon} != challenger {cfg.window.horizon}")
    window = WindowConfig(length=manifest.input_window.length, horizon=manifest.horizon)
    test = make_windows(ds, cfg.split, window)["test"]
    sess = session(onnx_bytes)

    def predict(x: np.ndarray) -> np.ndarray:
        return sess.run([OUTPUT], {INPUT: x.astype(np.float32)})[0]

    return score(ds, cfg.split, test, predict, season)


def _metric(metrics: Metrics, which: str, name: str) -> float | None:
    value = getattr(getattr(metrics, which), name)
    return None if value is None else float(value)


def retrain(job: Config) -> dict[str, Any]:
    """Run the job; returns the decision record (also written next to the versions)."""
    model_dir, name = Path(job.export.model_dir), job.export.name
    started = time.perf_counter()
    durations: dict[str, float] = {}
    record: dict[str, Any] = {
        "model": name,
        "started": datetime.now(UTC).isoformat(),
        "metric": job.retrain.metric,
        "margin": job.retrain.margin,
    }
    with model_lock(model_dir, name):
        try:
            champion_version = store.read_current(model_dir, name)
            champion = None
            if champion_version is not None:
                champion = store.verify_bundle(store.bundle_dir(model_dir, name, champion_version))
            record["champion"] = champion_version
            cfg = challenger_config(job, champion)

            t = time.perf_counter()
            run = train_run(cfg)
            durations["train"] = time.perf_counter() - t
            record["data"] = {
                "fingerprint": run.dataset.fingerprint,
                "source": run.dataset.source,
                "rows": run.dataset.rows,
                "series": len(run.dataset.series),
            }
            metric = job.retrain.metric
            t = time.perf_counter()
            onnx_bytes, manifest, extra = export_run(run)  # parity-checked before any decision
            durations["export"] = time.perf_counter() - t

            t = time.perf_counter()
            challenger = score_onnx(onnx_bytes, manifest, run.dataset, cfg, run.season)
            challenger_score = _metric(challenger, "model", metric)
            seasonal = _metric(challenger, "seasonal_naive", metric)
            record.update(
                challenger_score=challenger_score,
                seasonal_naive_score=seasonal,
                challenger_metrics=challenger.model.model_dump(),
            )
            if champion is not None and champion_version is not None:
                bundle = store.bundle_dir(model_dir, name, champion_version)
                champ = score_onnx((bundle / MODEL_FILE).read_bytes(), champion, run.dataset, cfg, run.season)
                champion_score = _metric(champ, "model", metric)
                record.update(champion_score=champion_score, champion_metrics=champ.model.model_dump())
                bar, against = champion_score, "champion"
                threshold = None if bar is None else bar * (1.0 - job.retrain.margin)
            else:
                bar, against, threshold = seasonal, "seasonal naive", seasonal
            durations["evaluate"] = time.perf_counter() - t
            promote = challenger_score is not None and threshold is not None and challenger_score < threshold
            record["promoted"] = promote
            record["reason"] = (
                f"{metric} {_fmt(challenger_score)} {'<' if promote else '>='} {against} {_fmt(bar)}"
                + (f" x (1 - {job.retrain.margin})" if against == "champion" else "")
            )
            if promote:
                t = time.perf_counter()
                published = store.publish(model_dir, manifest, onnx_bytes, extra, make_current=True)
                durations["publish"] = time.perf_counter() - t
                record["challenger"] = published.name
            record["outcome"] = "promoted" if promote else "kept"
        except Exception as exc:
            record.update(outcome="failed", promoted=False, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            durations["total"] = time.perf_counter() - started
            record["durations_s"] = {k: round(v, 3) for k, v in durations.items()}
            record["finished"] = datetime.now(UTC).isoformat()
            record["record"] = str(_write(model_dir, name, record))
    return record


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _write(model_dir: Path, name: str, record: dict[str, Any]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    data = json.dumps(record, indent=2, default=str).encode()
    return store.write_record(model_dir, name, DECISIONS, f"{stamp}.json", data)


def summary(record: dict[str, Any]) -> str:
    """One line for logs and cron mail."""
    if record.get("outcome") == "promoted":
        head = f"promoted {record['challenger']} over {record.get('champion') or 'no champion'}"
    elif record.get("outcome") == "kept":
        head = f"kept {record.get('champion') or 'no model'}"
    else:
        head = f"failed: {record.get('error')}"
    return f"retrain {record['model']}: {head} ({record.get('reason', '')}); record {record['record']}"
