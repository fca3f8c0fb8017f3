"""The batch retraining job: train a challenger on fresh data, promote it only if it wins.

    seqcast retrain --config configs/demo.toml [--model-dir models] [--name demo]

1. Take the model's lock (``MODEL_DIR/<name>/.retrain.lock``, an ``flock``: the
   kernel drops it when the process dies, so a crashed job leaves nothing that
   the next run trips over; a second job at the same time exits with code 3).
2. Build the challenger's config: the champion's saved recipe (model, window,
   train, evaluate) with the job's data, split, export, retrain and machine
   sections, then the job's explicit overrides (``--set``, ``--epochs``,
   ``--seed``) on top; with no champion or ``retrain.config_from = "job"``, the
   job's config as it is. Machine settings are never inherited.
3. Train the challenger; score it and the champion (their ONNX graphs, through
   the service's ``OnnxPredictor``) on the same most recent holdout of the
   fresh data.
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

from service.bundle import store
from service.bundle.manifest import Manifest, Metrics
from service.bundle.predictor import OnnxPredictor
from training.config import RECIPE_SECTIONS, Config, apply_overrides, stored_config
from training.evaluate import score_predictor
from training.pipeline import export_run, publish, train_run

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


def challenger_config(job: Config, champion: Manifest | None, overrides: list[str] | None = None) -> Config:
    """The champion's recipe with the job's other sections and explicit overrides (see the module doc)."""
    if champion is None or job.retrain.config_from == "job":
        return job
    raw = job.model_dump(mode="json")
    recipe = stored_config({**champion.training_config, "data": raw["data"]}).model_dump(mode="json")
    for section in RECIPE_SECTIONS:
        if raw[section] != recipe[section]:
            log.info("retrain: [%s] comes from the champion (retrain.config_from = 'champion')", section)
        raw[section] = recipe[section]
    return Config.model_validate(apply_overrides(raw, overrides or []))


def _metric(metrics: Metrics, which: str, name: str) -> float | None:
    value = getattr(getattr(metrics, which), name)
    return None if value is None else float(value)


def retrain(job: Config, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the job; returns the decision record (also written next to the versions).

    ``overrides``: the job's explicit ``section.key=value`` settings, applied on
    top of the champion's recipe too.
    """
    model_dir, name = job.model_dir, job.name
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
            cfg = challenger_config(job, champion, overrides)
            record["recipe"] = {k: v for k, v in cfg.model_dump(mode="json").items() if k in RECIPE_SECTIONS}

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
            exported = export_run(run)  # parity-checked and scored through onnxruntime
            durations["export"] = time.perf_counter() - t

            t = time.perf_counter()
            challenger = score_predictor(exported.predictor, run.dataset, cfg.split, run.season)
            challenger_score = _metric(challenger, "model", metric)
            seasonal = _metric(challenger, "seasonal_naive", metric)
            record.update(
                challenger_score=challenger_score,
                seasonal_naive_score=seasonal,
                challenger_metrics=challenger.model.model_dump(),
            )
            if champion is not None and champion_version is not None:
                bundle = store.bundle_dir(model_dir, name, champion_version)
                champion_predictor = OnnxPredictor.load(bundle)
                spec = champion_predictor.spec
                if spec.features != run.dataset.inputs(spec.horizon):
                    raise RetrainError(
                        f"champion features {spec.features} differ from the data's "
                        f"{run.dataset.inputs(spec.horizon)}"
                    )
                if spec.horizon != cfg.window.horizon:
                    raise RetrainError(f"champion horizon {spec.horizon} != challenger {cfg.window.horizon}")
                champ = score_predictor(champion_predictor, run.dataset, cfg.split, run.season)
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
                published = publish(exported, model_dir, make_current=True)
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
