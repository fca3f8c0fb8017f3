"""One training run from config to published bundle: load, window, fit, score, export."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from service.bundle import store
from service.bundle.manifest import DataInfo, InputWindow, Manifest, Metrics
from training import report
from training.config import Config, config_to_dict
from training.data import Dataset, load_dataset, season_for
from training.evaluate import Predict, format_table, score
from training.export import check_parity, has_dynamic_time, opset_of, to_onnx
from training.models import Ensemble, Model, build_model, rebuild, skip_damping_of
from training.train import LOSSES, TrainResult, ensemble_result, evaluate_loss, fit, seed_everything
from training.windows import Windows, make_windows, train_statistics

log = logging.getLogger("seqcast.pipeline")


@dataclass
class Run:
    config: Config
    dataset: Dataset
    windows: dict[str, Windows]
    model: Model
    result: TrainResult
    metrics: Metrics
    season: int


def torch_predict(model: Model, batch: int = 1024) -> Predict:
    """``(n, time, features) -> (n, horizon, targets)`` with the PyTorch model on CPU."""

    def predict(x: np.ndarray) -> np.ndarray:
        model.to("cpu").eval()
        with torch.no_grad():
            parts = [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
        return np.concatenate(parts) if parts else np.empty((0,))

    return predict


def season_of(cfg: Config, ds: Dataset) -> int:
    return cfg.evaluate.season or season_for(ds.frequency)


def train_run(cfg: Config) -> Run:
    """Load data, fit a model, score it on the test split."""
    ds = load_dataset(cfg.data)
    windows = make_windows(ds, cfg.split, cfg.window)
    mean, std = train_statistics(ds, cfg.split)
    log.info(
        "data %s: %d series, %d rows, frequency %s; windows train %d val %d test %d",
        ds.source,
        len(ds.series),
        ds.rows,
        ds.frequency,
        len(windows["train"]),
        len(windows["val"]),
        len(windows["test"]),
    )
    members, results = [], []
    for i in range(cfg.train.ensemble):
        # Member seeds seed*K .. seed*K+K-1: runs with different seeds share no member
        # (seed+i would make seeds 0 and 1 share K-1 of them); K=1 keeps the seed itself.
        train_cfg = cfg.train.model_copy(update={"seed": cfg.train.seed * cfg.train.ensemble + i})
        seed_everything(train_cfg.seed)  # initial weights come from the seed too
        member = build_model(
            cfg.model,
            len(ds.features),
            len(ds.targets),
            cfg.window.length,
            cfg.window.horizon,
            mean=mean,
            std=std,
        )
        results.append(fit(member, windows["train"], windows["val"], train_cfg))
        members.append(member)
    model: Model
    if len(members) == 1:
        model, result = members[0], results[0]
    else:
        model, val = Ensemble(members), windows["val"]
        loss = LOSSES[cfg.train.loss]
        result = ensemble_result(
            results, evaluate_loss(model, loss, torch.from_numpy(val.x), torch.from_numpy(val.y))
        )
    log.info(
        "trained %d epochs (%d steps) in %.1fs on %s; best epoch %d",
        len(result.history),
        result.steps,
        result.seconds,
        result.device,
        result.best_epoch,
    )
    season = season_of(cfg, ds)
    metrics = score(ds, cfg.split, windows["test"], torch_predict(model), season)
    return Run(cfg, ds, windows, model, result, metrics, season)


def data_scale(run: Run) -> float:
    """Std of the training targets: the yardstick for export parity."""
    return float(np.std(run.windows["train"].y))


def build_manifest(run: Run, onnx_bytes: bytes, created: datetime | None = None) -> Manifest:
    cfg, ds = run.config, run.dataset
    created = created or datetime.now(UTC)
    sha = store.sha256_bytes(onnx_bytes)
    length = cfg.window.length
    dynamic = has_dynamic_time(run.model)
    starts = [s.timestamps[0] for s in ds.series]
    ends = [s.timestamps[-1] for s in ds.series]
    return Manifest(
        name=cfg.export.name,
        version=store.new_version(sha, created),
        created=created,
        cell=cfg.model.cell if cfg.model.head != "mlp" else "none",
        head=cfg.model.head,
        input_window=InputWindow(length=length, min_length=length, max_length=None if dynamic else length),
        features=ds.features,
        targets=ds.targets,
        horizon=cfg.window.horizon,
        frequency=ds.frequency,
        scaling=cfg.model.scaling,
        # From the model, not the config: `seqcast export` may override the config.
        ensemble=run.model.model_args.get("ensemble", 1),
        skip_lag=run.model.model_args["cfg"].get("skip_lag"),
        skip_damping=skip_damping_of(run.model),
        metrics=run.metrics,
        training_config=config_to_dict(cfg),
        data=DataInfo(
            fingerprint=ds.fingerprint,
            source=ds.source,
            series=len(ds.series),
            rows=ds.rows,
            start=str(min(starts)),
            end=str(max(ends)),
        ),
        onnx_sha256=sha,
        opset=opset_of(onnx_bytes),
        framework={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
    )


def export_run(run: Run) -> tuple[bytes, Manifest, dict[str, bytes]]:
    """ONNX bytes (parity-checked), their manifest, and report files for the bundle."""
    cfg = run.config.export
    test_x = run.windows["test"].x
    onnx_bytes = to_onnx(run.model, test_x, cfg.exporter, cfg.opset)
    real = np.concatenate([test_x, run.windows["val"].x, run.windows["train"].x])
    parity = check_parity(run.model, onnx_bytes, real, data_scale(run), cfg.tolerance)
    for line in parity.checks:
        log.info("parity %s", line)
    manifest = build_manifest(run, onnx_bytes)
    pred = torch_predict(run.model)(test_x)
    extra = {
        "report/loss.png": report.loss_curve(run.result.history, run.result.best_epoch),
        "report/forecast.png": report.forecast_plot(run.dataset, run.windows["test"], pred),
        "report/metrics.txt": (
            format_table(run.metrics) + "\n\nparity:\n" + "\n".join(parity.checks) + "\n"
        ).encode(),
    }
    return onnx_bytes, manifest, extra


def publish_run(run: Run, model_dir: Path | None = None) -> Path:
    """Export, verify and atomically publish; returns the bundle directory."""
    onnx_bytes, manifest, extra = export_run(run)
    target = Path(model_dir or run.config.export.model_dir)
    return store.publish(target, manifest, onnx_bytes, extra, make_current=run.config.export.make_current)


def save_checkpoint(run: Run, path: Path) -> None:
    """Weights, model arguments and the config: enough to rebuild and export later (no pickled modules)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model_args": run.model.model_args,
            "state_dict": run.model.state_dict(),
            "config": config_to_dict(run.config),
            "history": run.result.history,
            "best_epoch": run.result.best_epoch,
        },
        path,
    )


def load_checkpoint(path: Path) -> tuple[Model, dict[str, Any]]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return rebuild(payload["model_args"], payload["state_dict"]), payload
