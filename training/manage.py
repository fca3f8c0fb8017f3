"""``seqcast models list|show|promote|rollback|prune``: version management, no torch needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.bundle import store
from training.config import default_model_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    # --model-dir and -q work before or after the action (`models --model-dir X list` and
    # `models list --model-dir X`), like every other subcommand's options.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="bundle store (default: $SEQCAST_MODEL_DIR, else ./models)",
    )
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings only")
    p = sub.add_parser(
        "models", help="list, show, promote, roll back and prune published versions", parents=[common]
    )
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="versions with their metrics; * marks CURRENT", parents=[common])
    a.add_argument("name", nargs="?", help="one model (default: all)")
    a = actions.add_parser("show", help="print a version's manifest (default: CURRENT)", parents=[common])
    a.add_argument("name")
    a.add_argument("version", nargs="?")
    a = actions.add_parser("promote", help="make a version CURRENT", parents=[common])
    a.add_argument("name")
    a.add_argument("version")
    a = actions.add_parser(
        "rollback", help="make the previous CURRENT version CURRENT again", parents=[common]
    )
    a.add_argument("name")
    a = actions.add_parser(
        "prune",
        help="delete all but the newest K versions (never CURRENT or the one before)",
        parents=[common],
    )
    a.add_argument("name")
    a.add_argument("--keep", type=int, required=True)


def _require(model_dir: Path, name: str) -> None:
    if not store.list_versions(model_dir, name):
        raise store.StoreError(f"no model {name!r} in {model_dir}")


def run(args: argparse.Namespace) -> int:
    model_dir: Path = getattr(args, "model_dir", None) or default_model_dir()
    if args.action == "list":
        names = [args.name] if args.name else store.list_models(model_dir)
        if not names:
            print(f"no models in {model_dir}")
        for name in names:
            _require(model_dir, name)
            current = store.read_current(model_dir, name)
            print(name)
            for version in store.list_versions(model_dir, name):
                m = store.load_manifest(store.bundle_dir(model_dir, name, version))
                mase = m.metrics.model.mase if m.metrics else None
                seasonal = m.metrics.seasonal_naive.mase if m.metrics else None
                score = (
                    "MASE n/a" if mase is None else f"MASE {mase:.3f} (seasonal naive {seasonal or 0:.3f})"
                )
                mark = "*" if version == current else " "
                print(f" {mark} {version}  {m.spec.summary()}  {score}")
        return 0
    _require(model_dir, args.name)
    if args.action == "show":
        shown: str | None = args.version or store.read_current(model_dir, args.name)
        if shown is None:
            raise store.StoreError(f"model {args.name!r} has no CURRENT version; name one")
        print(store.load_manifest(store.bundle_dir(model_dir, args.name, shown)).model_dump_json(indent=2))
    elif args.action == "promote":
        store.set_current(model_dir, args.name, args.version, reason="promote")
        print(f"{args.name}: CURRENT = {args.version}")
    elif args.action == "rollback":
        previous = store.previous_version(model_dir, args.name)
        if previous is None:
            raise store.StoreError(f"model {args.name!r} has no previous version to roll back to")
        store.set_current(model_dir, args.name, previous, reason="rollback")
        print(f"{args.name}: rolled back, CURRENT = {previous}")
    elif args.action == "prune":
        deleted = store.prune(model_dir, args.name, args.keep)
        print(f"{args.name}: deleted {len(deleted)} version(s)" + "".join(f"\n  {v}" for v in deleted))
    return 0
