"""One training run from config to published bundle: load, window, fit, export, score, publish.

The test split is scored through the exported graph with the service's own
``OnnxPredictor``, after the parity check: the numbers in a manifest are those
of the model that is served.
"""

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

from service.bundle import intervals, store
from service.bundle.manifest import DataInfo, Intervals, Manifest, Metrics, NetworkSpec
from service.bundle.predictor import OnnxPredictor, predict_with_bounds
from training import recipe, report, report_page
from training.config import Config, config_to_dict
from training.data import Dataset, load_dataset, season_for
from training.evaluate import format_table, per_series_table, score_predictor
from training.export import check_parity, opset_of, to_onnx
from training.models import Ensemble, Model, build_model, rebuild, spec_for
from training.train import LOSSES, TrainResult, ensemble_result, evaluate_loss, fit, seed_everything
from training.windows import Windows, make_windows, smallest_before_test, train_statistics

log = logging.getLogger("seqcast.pipeline")


@dataclass
class Run:
    """A trained model and what it was trained on."""

    config: Config
    dataset: Dataset
    windows: dict[str, Windows]
    model: Model
    result: TrainResult
    season: int
    choice: recipe.Choice | None = None  # how the automatic recipe chose the model, if it did


@dataclass
class Exported:
    """A parity-checked graph, scored through ``predictor``, with its manifest and report files."""

    onnx: bytes
    manifest: Manifest
    files: dict[str, bytes]
    predictor: OnnxPredictor


def season_of(cfg: Config, ds: Dataset) -> int:
    return cfg.evaluate.season or season_for(ds.frequency)


def train_run(cfg: Config, ds: Dataset | None = None) -> Run:
    """Load data (unless given: a backtest hands in earlier cuts of it), resolve what follows from
    it, then choose (automatic recipe) or fit (a hand-written ``[model]``) the model."""
    if cfg.machine.threads:
        # Before any torch work here, so this run's own work (the ridge fits, the
        # scoring) uses the threads it asked for; side-by-side children set theirs.
        torch.set_num_threads(cfg.machine.threads)
    ds = ds if ds is not None else load_dataset(cfg.data)
    season = season_of(cfg, ds)
    cfg = recipe.resolve(cfg, ds, season)
    mean, std = train_statistics(ds, cfg.split)
    log.info(
        "data %s: %d series, %d rows, frequency %s; split %s, window %d, horizon %d",
        ds.source,
        len(ds.series),
        ds.rows,
        ds.frequency,
        cfg.split.model_dump(),
        cfg.window.length,
        cfg.window.horizon,
    )
    if cfg.model is None:
        choice, windows = recipe.choose(cfg, ds, season, mean, std)
        log.info("%s", recipe.verdict(choice))
        return Run(cfg, ds, windows, choice.model, choice.result, season, choice)
    windows = make_windows(ds, cfg.split, cfg.window)
    model, result = fit_network(cfg, cfg.model, ds, windows, mean, std)
    return Run(cfg, ds, windows, model, result, season)


def fit_network(
    cfg: Config,
    network: NetworkSpec,
    ds: Dataset,
    windows: dict[str, Windows],
    mean: np.ndarray,
    std: np.ndarray,
) -> tuple[Model, TrainResult]:
    """Train the hand-written network (``train.ensemble`` members) on the windows."""
    assert cfg.window.length is not None  # resolved
    spec = spec_for(network, ds, cfg.window.length, cfg.window.horizon, min_length=cfg.window.min_history)
    members, results = [], []
    for i in range(cfg.train.ensemble):
        # Member seeds seed*K .. seed*K+K-1: runs with different seeds share no member
        # (seed+i would make seeds 0 and 1 share K-1 of them); K=1 keeps the seed itself.
        train_cfg = cfg.train.model_copy(update={"seed": cfg.train.seed * cfg.train.ensemble + i})
        seed_everything(train_cfg.seed)  # initial weights come from the seed too
        member = build_model(spec, mean=mean, std=std)
        results.append(fit(member, windows["train"], windows["val"], train_cfg, cfg.machine))
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
    return model, result


def data_scale(run: Run) -> float:
    """Std of the training targets: the yardstick for export parity."""
    return float(np.std(run.windows["train"].y))


def calibration(run: Run) -> Intervals:
    """The interval calibration (``service.bundle.intervals``): the recipe's on every window before
    the test split, forecast by the chosen model as it was chosen (before the ridge parts of a
    linear winner learn from the validation windows); a hand-written model's on the validation
    windows (whose early stopping watched them: a little optimistic); for a quantile head
    (``network.quantiles``), the levels it learned."""
    positive = smallest_before_test(run.dataset, run.config.split) >= 0
    learned = run.model.spec.network.quantiles
    if learned:  # a quantile head serves the bounds it learned, read from the graph
        n = len(run.windows["val"])
        horizon = run.model.spec.horizon
        return Intervals(
            method="quantile", scale="model", windows=n, errors=n * horizon, levels=learned, positive=positive
        )
    if run.choice is not None and run.choice.calibration is not None:
        windows, forecast = run.choice.calibration.windows, run.choice.calibration.forecast
    else:
        windows = run.windows["val"]
        with torch.no_grad():
            forecast = run.model.eval()(torch.from_numpy(windows.x)).numpy()
    ids = [run.dataset.series[int(i)].id for i in windows.series]  # a panel's series: their own widths
    return intervals.calibrate(
        windows.x, windows.y, forecast, positive=positive, series=ids, origins=windows.origin
    )


def build_manifest(
    run: Run, onnx_bytes: bytes, metrics: Metrics | None = None, created: datetime | None = None
) -> Manifest:
    cfg, ds = run.config, run.dataset
    created = created or datetime.now(UTC)
    sha = store.sha256_bytes(onnx_bytes)
    starts = [s.timestamps[0] for s in ds.series]
    ends = [s.timestamps[-1] for s in ds.series]
    return Manifest(
        name=cfg.name,
        version=store.new_version(sha, created),
        created=created,
        spec=run.model.spec,  # as trained: "auto" options resolved
        metrics=metrics,
        selection=run.choice.record() if run.choice is not None else None,
        intervals=calibration(run),
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


def export_run(run: Run) -> Exported:
    """Export to ONNX, check parity through the serving predictor, score the test split with it."""
    cfg = run.config.export
    test = run.windows["test"]
    onnx_bytes = to_onnx(run.model, test.x, cfg.exporter, cfg.opset)
    unscored = build_manifest(run, onnx_bytes)
    predictor = OnnxPredictor.from_bytes(onnx_bytes, unscored.spec)
    real = np.concatenate([test.x, run.windows["val"].x, run.windows["train"].x])
    parity = check_parity(run.model, predictor, real, data_scale(run), cfg.parity_tolerance)
    for line in parity.checks:
        log.info("parity %s", line)
    metrics = score_predictor(predictor, run.dataset, run.config.split, run.season)
    # (n, horizon, targets): the served graph on the test windows; a quantile head's bounds too
    pred, learned = predict_with_bounds(predictor, test.x, bounds=True)
    manifest = unscored.model_copy(update={"metrics": metrics})
    files = {
        "report/loss.png": report.loss_curve(run.result.history, run.result.best_epoch),
        "report/forecast.png": report.forecast_plot(run.dataset, test, pred),
        "report/metrics.txt": (
            format_table(metrics) + "\n\nparity:\n" + "\n".join(parity.checks) + "\n"
        ).encode(),
    }
    if run.choice is not None:
        files["report/selection.txt"] = recipe.table(run.choice).encode()
    if len(run.dataset.series) > 1:
        table = per_series_table(predictor, run.dataset, run.config.split, run.season)
        files["report/per_series.txt"] = table.encode()
    # the page a person opens (report/index.html) and the numbers it is rebuilt from
    data = report_page.collect(
        run.dataset, test, pred, manifest, run.result, run.season, run.config.split, learned
    )
    files.update(report_page.files(manifest, data))
    return Exported(onnx_bytes, manifest, files, predictor)


def publish(exported: Exported, model_dir: Path, make_current: bool = True) -> Path:
    """Atomically publish an exported model; returns the bundle directory."""
    return store.publish(
        model_dir, exported.manifest, exported.onnx, exported.files, make_current=make_current
    )


def publish_run(run: Run, model_dir: Path | None = None) -> Path:
    """Export, verify and atomically publish; returns the bundle directory."""
    target = Path(model_dir) if model_dir is not None else run.config.model_dir
    return publish(export_run(run), target, run.config.export.make_current)


def save_checkpoint(run: Run, path: Path) -> None:
    """Weights, model arguments and the config: enough to rebuild and export later (no pickled modules)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "spec": run.model.spec.model_dump(mode="json"),
            "state_dict": run.model.state_dict(),
            "config": config_to_dict(run.config),
            "history": run.result.history,
            "best_epoch": run.result.best_epoch,
        },
        path,
    )


def load_checkpoint(path: Path) -> tuple[Model, dict[str, Any]]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if "spec" not in payload:
        raise ValueError(f"{path}: a checkpoint from an older seqcast (no model spec); train it again")
    return rebuild(payload["spec"], payload["state_dict"]), payload
