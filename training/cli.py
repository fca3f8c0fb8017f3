"""``seqcast`` command line: train, evaluate, export, retrain, explain and manage models.

seqcast train --config configs/demo.toml [--set train.epochs=5] [--epochs 5]
seqcast evaluate --name demo [--version V] [--set data.path=new.csv]
seqcast export --checkpoint runs/demo.pt
seqcast models list

Every subcommand takes ``--model-dir`` (default: the config's export.model_dir,
else $SEQCAST_MODEL_DIR, else ./models).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from training import distributed, manage


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set model.hidden=32 (repeatable)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        help="bundle store (default: export.model_dir, $SEQCAST_MODEL_DIR, ./models)",
    )
    p.add_argument("--name", help="model name (default: export.name, else the config file's name)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqcast", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train, score against baselines, export and publish a bundle")
    p.add_argument("--config", type=Path, required=True, help="TOML config")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="shortcut for --set machine.device=")
    p.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    p.add_argument("--checkpoint", type=Path, help="also save weights + config here (for `seqcast export`)")
    p.add_argument("--no-publish", action="store_true", help="train and score only")
    _add_common(p)

    p = sub.add_parser("evaluate", help="score a published bundle (ONNX Runtime) on its data's test split")
    p.add_argument("--version", help="version to score (default: CURRENT)")
    p.add_argument("--config", type=Path, help="config whose data to use (default: the bundle's own)")
    _add_common(p)

    p = sub.add_parser("export", help="export and publish a checkpoint saved by `seqcast train --checkpoint`")
    p.add_argument("--checkpoint", type=Path, required=True)
    _add_common(p)

    p = sub.add_parser("retrain", help="train a challenger on fresh data; promote it only if it wins")
    p.add_argument(
        "--config", type=Path, required=True, help="TOML config: fresh data, [retrain] metric/margin"
    )
    p.add_argument(
        "--epochs", type=int, help="shortcut for --set train.epochs=N (applies to the champion's recipe)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="shortcut for --set machine.device=")
    p.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    p.add_argument("--metric", choices=["mase", "mae", "rmse", "smape"], help="shortcut: retrain.metric")
    p.add_argument("--margin", type=float, help="shortcut: retrain.margin (0.05 = 5%% better)")
    _add_common(p)

    p = sub.add_parser(
        "backtest", help="train and score at several earlier forecast origins (rolling origin)"
    )
    p.add_argument("--config", type=Path, required=True, help="TOML config")
    p.add_argument("--origins", type=int, default=4, help="forecast origins, newest first (default 4)")
    p.add_argument("--step", type=int, help="points between origins (default: the horizon)")
    p.add_argument(
        "--out", type=Path, help="folder for table.txt and forecasts.png (default runs/backtest-NAME)"
    )
    p.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    _add_common(p)

    p = sub.add_parser("explain", help="plot how the gradient fades over time steps for RNN, LSTM and GRU")
    p.add_argument("--config", type=Path, required=True, help="TOML config (data, window, model size)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per cell (0: untrained)")
    p.add_argument("--out", type=Path, default=Path("gradient_fade.png"), help="PNG to write")
    _add_common(p)

    p = sub.add_parser("report", help="rebuild a bundle's report/index.html from its report/data.json")
    p.add_argument(
        "bundle", type=Path, help="a bundle folder (MODEL_DIR/NAME/VERSION), or MODEL_DIR/NAME: CURRENT"
    )
    p.add_argument("--out", type=Path, help="write the page here instead of the bundle's report/index.html")

    manage.add_parser(sub)
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = list(args.overrides)
    shortcuts = (
        ("epochs", "train.epochs"),
        ("device", "machine.device"),
        ("seed", "train.seed"),
        ("metric", "retrain.metric"),
        ("margin", "retrain.margin"),
    )
    for flag, key in shortcuts:
        if getattr(args, flag, None) is not None:
            extra.append(f"{key}={getattr(args, flag)!r}".replace("'", '"'))
    if args.model_dir is not None:  # relative to the working directory, as any argument
        extra.append(f"export.model_dir={json.dumps(str(args.model_dir.resolve()))}")
    if args.name is not None:
        extra.append(f"export.name={json.dumps(args.name)}")
    return extra


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.evaluate import format_table
    from training.pipeline import export_run, publish, save_checkpoint, train_run
    from training.recipe import verdict

    cfg = load_config(args.config, _overrides(args))
    if distributed.launched():  # torchrun: every rank trains, rank 0 alone exports and publishes
        if cfg.model is None:
            raise ValueError(
                "torchrun trains a hand-written [model] with DistributedDataParallel; the automatic "
                "recipe trains its candidates side by side in one process: run it without torchrun"
            )
        distributed.init(cfg.machine.device)
    main = distributed.is_main()  # before shutdown: a rank alone is rank 0 of one
    try:
        run = train_run(cfg)
    finally:
        distributed.shutdown()  # every collective is behind: the rest is rank 0's alone
    if not main:
        return 0
    exported = export_run(run)
    metrics = exported.manifest.metrics
    assert metrics is not None  # export_run scores the test split
    if run.choice is not None:  # the automatic recipe: what won and whether a baseline did
        print(verdict(run.choice) + " (every candidate: report/selection.txt in the bundle)\n")
    print(format_table(metrics, f"{cfg.name} (onnxruntime): {metrics.split}"))
    if args.checkpoint:
        save_checkpoint(run, args.checkpoint)
        print(f"checkpoint: {args.checkpoint}")
    if not args.no_publish:
        bundle = publish(exported, cfg.model_dir, cfg.export.make_current)
        print(f"bundle: {bundle}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from training import backtest
    from training.config import load_config
    from training.data import load_dataset

    cfg = load_config(args.config, _overrides(args))
    results = backtest.run_backtest(cfg, args.origins, args.step)
    text = backtest.table(results)
    print(text)
    out = args.out or Path("runs") / f"backtest-{cfg.name}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.txt").write_text(text)
    backtest.plot(load_dataset(cfg.data), results, out / "forecasts.png")
    print(f"table and plot: {out}/")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from service.bundle import store
    from service.bundle.predictor import OnnxPredictor
    from training.config import default_model_dir, load_config, stored_config
    from training.data import load_dataset
    from training.evaluate import format_table, score_predictor
    from training.pipeline import season_of

    job = load_config(args.config, _overrides(args)) if args.config else None
    model_dir = args.model_dir or (job.model_dir if job else default_model_dir())
    name = args.name or (job.name if job else None)
    if name is None:
        raise SystemExit("error: name the model: --name NAME (or --config CONFIG)")
    version = args.version or store.read_current(model_dir, name)
    if version is None:
        raise SystemExit(f"error: model {name!r} has no CURRENT version in {model_dir}")
    bundle = store.bundle_dir(model_dir, name, version)
    predictor = OnnxPredictor.load(bundle)
    cfg = job or stored_config(store.load_manifest(bundle).training_config, args.overrides)
    ds = load_dataset(cfg.data)
    metrics = score_predictor(predictor, ds, cfg.split, season_of(cfg, ds))
    print(format_table(metrics, f"{name} {version} (onnxruntime): {metrics.split}"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.config import stored_config
    from training.data import load_dataset
    from training.pipeline import Run, load_checkpoint, publish_run, season_of
    from training.train import TrainResult
    from training.windows import make_windows

    fixed = [o for o in args.overrides if o.split(".", 1)[0].strip() in ("model", "window", "train")]
    if fixed:
        # The weights are trained: such a setting would describe a model that is not the one exported.
        raise ValueError(f"--set {fixed[0]}: a checkpoint's [model], [window] and [train] are fixed")
    model, payload = load_checkpoint(args.checkpoint)
    cfg = stored_config(payload["config"], _overrides(args))
    ds = load_dataset(cfg.data)
    windows = make_windows(ds, cfg.split, cfg.window)
    result = TrainResult(history=payload["history"], best_epoch=payload["best_epoch"])
    bundle = publish_run(Run(cfg, ds, windows, model, result, season_of(cfg, ds)))
    print(f"bundle: {bundle}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.retrain import EXIT_LOCKED, LockHeld, retrain, summary

    overrides = _overrides(args)
    cfg = load_config(args.config, overrides)
    try:
        record = retrain(cfg, overrides)
    except LockHeld as exc:
        print(f"retrain {cfg.name}: not run: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    print(summary(record))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.explain import gradient_fade, plot, table

    cfg = load_config(args.config, args.overrides)
    fades = gradient_fade(cfg, args.epochs)
    print(table(fades))
    args.out.write_bytes(plot(fades))
    print(f"plot: {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from service.bundle import store
    from training.report_page import rebuild

    bundle = args.bundle
    if (bundle / "CURRENT").is_file():  # a model folder: the version it serves
        current = store.read_current(bundle.parent, bundle.name)
        if current is None:
            raise store.StoreError(f"{bundle}/CURRENT names no version")
        bundle = bundle / current
    print(f"report: {rebuild(bundle, args.out)}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "retrain": cmd_retrain,
    "explain": cmd_explain,
    "backtest": cmd_backtest,
    "report": cmd_report,
    "models": manage.run,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet = getattr(args, "quiet", False) or int(os.environ.get("RANK", "0")) > 0  # torchrun: rank 0 logs
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from service.bundle.store import StoreError

    try:
        return COMMANDS[args.command](args)
    except (StoreError, ValidationError, ValueError, FileNotFoundError) as exc:  # DataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # ExportError, RetrainError, CUDA not available
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
