"""``seqcast models list|show|promote|rollback|prune``: version management, no torch needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.bundle import store


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, show, promote, roll back and prune published versions")
    p.add_argument("--model-dir", type=Path, default=Path("models"), help="bundle store (default: models)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="versions with their metrics; * marks CURRENT")
    a.add_argument("name", nargs="?", help="one model (default: all)")
    a = actions.add_parser("show", help="print a version's manifest (default: CURRENT)")
    a.add_argument("name")
    a.add_argument("version", nargs="?")
    a = actions.add_parser("promote", help="make a version CURRENT")
    a.add_argument("name")
    a.add_argument("version")
    a = actions.add_parser("rollback", help="make the previous CURRENT version CURRENT again")
    a.add_argument("name")
    a = actions.add_parser(
        "prune", help="delete all but the newest K versions (never CURRENT or the one before)"
    )
    a.add_argument("name")
    a.add_argument("--keep", type=int, required=True)


def _require(model_dir: Path, name: str) -> None:
    if not store.list_versions(model_dir, name):
        raise store.StoreError(f"no model {name!r} in {model_dir}")


def run(args: argparse.Namespace) -> int:
    model_dir: Path = args.model_dir
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
                print(
                    f" {mark} {version}  {m.cell}/{m.head}{f' x{m.ensemble}' if m.ensemble > 1 else ''}"
                    f"{f' +snaive{m.skip_lag}' if m.skip_lag else ''}"
                    f"{f' damped {m.skip_damping:g}' if m.skip_damping is not None else ''}"
                    f"  window {m.input_window.length} "
                    f"horizon {m.horizon}  {score}"
                )
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
