"""``seqcast`` command line: train, evaluate and export forecasters.

seqcast train --config configs/demo.toml [--set train.epochs=5] [--epochs 5]
seqcast evaluate --model-dir models --name demo [--version V] [--set data.path=new.csv]
seqcast export --checkpoint runs/demo/checkpoint.pt [--model-dir models]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from training import manage


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set model.hidden=32 (repeatable)",
    )
    p.add_argument("--model-dir", type=Path, help="bundle store (default: export.model_dir)")
    p.add_argument("--name", help="model name (default: export.name)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqcast", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train, score against baselines, export and publish a bundle")
    p.add_argument("--config", type=Path, required=True, help="TOML config")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="shortcut for --set train.device=")
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
    p.add_argument("--metric", choices=["mase", "mae", "rmse", "smape"], help="shortcut: retrain.metric")
    p.add_argument("--margin", type=float, help="shortcut: retrain.margin (0.05 = 5%% better)")
    _add_common(p)

    p = sub.add_parser("explain", help="plot how the gradient fades over time steps for RNN, LSTM and GRU")
    p.add_argument("--config", type=Path, required=True, help="TOML config (data, window, model size)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per cell (0: untrained)")
    p.add_argument("--out", type=Path, default=Path("gradient_fade.png"), help="PNG to write")
    _add_common(p)

    manage.add_parser(sub)
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = list(args.overrides)
    shortcuts = (
        ("epochs", "train.epochs"),
        ("device", "train.device"),
        ("seed", "train.seed"),
        ("metric", "retrain.metric"),
        ("margin", "retrain.margin"),
    )
    for flag, key in shortcuts:
        if getattr(args, flag, None) is not None:
            extra.append(f"{key}={getattr(args, flag)!r}".replace("'", '"'))
    if args.model_dir is not None:
        extra.append(f'export.model_dir="{args.model_dir}"')
    if args.name is not None:
        extra.append(f'export.name="{args.name}"')
    return extra


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.evaluate import format_table
    from training.pipeline import publish_run, save_checkpoint, train_run

    cfg = load_config(args.config, _overrides(args))
    run = train_run(cfg)
    print(format_table(run.metrics, f"{cfg.export.name}: {run.metrics.split}"))
    if args.checkpoint:
        save_checkpoint(run, args.checkpoint)
        print(f"checkpoint: {args.checkpoint}")
    if not args.no_publish:
        bundle = publish_run(run)
        print(f"bundle: {bundle}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from service.bundle import store
    from training.config import Config, apply_overrides, load_config
    from training.data import load_dataset
    from training.evaluate import format_table, score
    from training.export import INPUT, OUTPUT, session
    from training.pipeline import season_of
    from training.windows import make_windows

    model_dir = args.model_dir or Path("models")
    name = args.name or "demo"
    version = args.version or store.read_current(model_dir, name)
    if version is None:
        raise SystemExit(f"error: model {name!r} has no CURRENT version in {model_dir}")
    bundle = store.bundle_dir(model_dir, name, version)
    manifest = store.verify_bundle(bundle)
    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:
        cfg = Config.model_validate(apply_overrides(dict(manifest.training_config), args.overrides))
    ds = load_dataset(cfg.data)
    if ds.features != manifest.features:
        raise SystemExit(f"error: data features {ds.features} != model features {manifest.features}")
    test = make_windows(ds, cfg.split, cfg.window)["test"]
    sess = session((bundle / "model.onnx").read_bytes())

    def predict(x: np.ndarray) -> np.ndarray:
        return sess.run([OUTPUT], {INPUT: x.astype(np.float32)})[0]

    metrics = score(ds, cfg.split, test, predict, season_of(cfg, ds))
    print(format_table(metrics, f"{name} {version} (onnxruntime): {metrics.split}"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.config import Config, apply_overrides
    from training.data import load_dataset
    from training.evaluate import score
    from training.pipeline import Run, load_checkpoint, publish_run, season_of, torch_predict
    from training.train import TrainResult
    from training.windows import make_windows

    model, payload = load_checkpoint(args.checkpoint)
    raw = apply_overrides(payload["config"], _overrides(args))
    cfg = Config.model_validate(raw)
    ds = load_dataset(cfg.data)
    windows = make_windows(ds, cfg.split, cfg.window)
    season = season_of(cfg, ds)
    metrics = score(ds, cfg.split, windows["test"], torch_predict(model), season)
    result = TrainResult(history=payload["history"], best_epoch=payload["best_epoch"])
    bundle = publish_run(Run(cfg, ds, windows, model, result, metrics, season))
    print(f"bundle: {bundle}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.retrain import EXIT_LOCKED, LockHeld, retrain, summary

    cfg = load_config(args.config, _overrides(args))
    try:
        record = retrain(cfg)
    except LockHeld as exc:
        print(f"retrain {cfg.export.name}: not run: {exc}", file=sys.stderr)
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


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "retrain": cmd_retrain,
    "explain": cmd_explain,
    "models": manage.run,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
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
