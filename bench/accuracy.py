"""Accuracy benchmark: Seqcast's default recipe against naive, seasonal naive, AutoETS, AutoTheta and
AutoARIMA on every data set in shared/datasets, with the M4 protocol (bench/protocol.py).

Run it in .venv-bench (the runtime packages plus statsforecast; see docs/accuracy.md), from the
repository root with PYTHONPATH set to it:

    PYTHONPATH=$PWD .venv-bench/bin/python bench/accuracy.py                 # every set, seeds 0 1 2
    PYTHONPATH=$PWD .venv-bench/bin/python bench/accuracy.py --quick         # 6 diverse sets, seed 0
    PYTHONPATH=$PWD .venv-bench/bin/python bench/accuracy.py --only airline gas --seeds 0
    PYTHONPATH=$PWD .venv-bench/bin/python bench/accuracy.py --anchors-only  # the anchors alone
    PYTHONPATH=$PWD .venv-bench/bin/python bench/accuracy.py --update-doc docs/accuracy.md

The classical anchors' forecasts are cached in bench/.cache/anchors/ (git-ignored); with a warm
cache only Seqcast trains. Every result lands in a JSON file (--json, default
bench/results/accuracy.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/accuracy.py` without PYTHONPATH
    sys.path.insert(0, str(ROOT))

from bench import anchors, protocol, tables  # noqa: E402
from bench.protocol import BY_NAME, CLASSICAL, QUICK, SETS, DataSet, Score, Series  # noqa: E402
from bench.seqcast_runner import Pending, seqcast_forecast  # noqa: E402

log = logging.getLogger("bench.accuracy")
DATA = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "bench" / "results" / "accuracy.json"
DOC_START, DOC_END = "<!-- results:start -->", "<!-- results:end -->"
OUTPUT_FLAGS = ("--json", "--update-doc", "--jobs")  # left out of the command shown in the doc


def _seqcast_job(args: tuple[DataSet, list[Series], Path, int, int | None]) -> dict[str, Any]:
    s, series, root, seed, threads = args
    try:
        r = seqcast_forecast(s, series, root, seed, threads)
    except Pending as exc:
        return {"pending": str(exc)}
    except Exception as exc:  # a failed set is reported, never dropped silently
        log.exception("Seqcast failed on %s seed %d", s.name, seed)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "forecast": r.forecast,
        "train_s": r.train_s,
        "export_s": r.export_s,
        "chosen": r.chosen,
        "resolved": r.resolved,
        "bands": r.bands,
    }


def run_seqcast(
    work: list[tuple[DataSet, list[Series]]], root: Path, seeds: list[int], jobs: int, threads: int | None
) -> dict[str, dict[int, dict[str, Any]]]:
    """set -> seed -> the run (forecast, times, choice) or {"pending"|"error": why}."""
    todo = [(s, series, root, seed, threads) for s, series in work for seed in seeds]
    if jobs > 1:  # spawned workers: no fork after statsforecast's or torch's threads started
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_seqcast_job, todo))
    else:
        done = [_seqcast_job(t) for t in todo]
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for (s, _series, _root, seed, _threads), r in zip(todo, done, strict=True):
        out.setdefault(s.name, {})[seed] = r
        if "forecast" in r:
            print(
                f"  Seqcast {s.name} seed {seed}: {r['chosen']}, train {r['train_s']:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    return out


def other_seasons(work: list[tuple[DataSet, list[Series]]]) -> list[str]:
    """A note per set with a longer season than the protocol's: that seasonal naive's scores."""
    out = []
    for s, series in work:
        if s.other_season:
            f = np.stack([protocol.seasonal_naive(x.split(s.h)[0], s.h, s.other_season) for x in series])
            got = protocol.score_set(series, f, s)
            out.append(
                f"{s.name}: the seasonal naive of lag {s.other_season} (outside the protocol, so not ranked) "
                f"scores MASE {got.mase:.3f}, sMAPE {got.smape:.2f} % on the same lag-{s.season} scale."
            )
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pandas", "torch", "onnxruntime", "statsforecast"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{platform.system()} {platform.machine()}, {model}, {cpus} CPU(s) visible"


def shown_command(argv: list[str]) -> str:
    """The command that reproduces the numbers (output-only options left out)."""
    shown, skipping = [], False
    for arg in argv:
        if arg in OUTPUT_FLAGS:
            skipping = True
        elif not (skipping and not arg.startswith("-")):
            skipping = False
            shown.append(arg)
    return " ".join(["PYTHONPATH=$PWD .venv-bench/bin/python bench/accuracy.py", *shown])


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", help="Seqcast seeds (default 0 1 2; --quick: 0)")
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, seed 0 unless --seeds")
    p.add_argument("--only", nargs="+", choices=list(BY_NAME), metavar="NAME", help="these sets only")
    p.add_argument("--anchors-only", action="store_true", help="the anchors, without Seqcast")
    p.add_argument("--jobs", type=int, default=1, help="processes for anchors and Seqcast runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads per Seqcast run")
    p.add_argument("--data", type=Path, default=DATA, help=f"the data sets' folder (default {DATA})")
    p.add_argument("--json", type=Path, default=RESULTS, help="where to write every result")
    p.add_argument("--update-doc", type=Path, help=f"replace the text between {DOC_START} and {DOC_END}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    chosen = args.only or (list(QUICK) if args.quick else [s.name for s in SETS])
    started = datetime.now(UTC)

    work, skipped = [], {}
    for s in (BY_NAME[n] for n in chosen):
        series, short = protocol.load(s, args.data)
        work.append((s, series))
        if short:
            skipped[s.name] = short
    methods = list(anchors.METHODS)
    t0 = time.perf_counter()
    fc = anchors.forecast_sets(work, methods, args.jobs)
    anchor_s = time.perf_counter() - t0
    forecasts = {m: {k: [f.values] for k, f in per.items()} for m, per in fc.items()}
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    if not args.anchors_only:
        methods.append(tables.SEQCAST)
        runs = run_seqcast(work, args.data, seeds, args.jobs, args.threads)
        forecasts[tables.SEQCAST] = {
            k: [v[seed]["forecast"] for seed in seeds]
            for k, v in runs.items()
            if all("forecast" in v[seed] for seed in seeds)
        }
    # method -> set -> per seed: each series' scores
    detail = {
        m: {
            s.name: [protocol.series_scores(series, f, s) for f in per[s.name]]
            for s, series in work
            if s.name in per
        }
        for m, per in forecasts.items()
    }
    scores = {
        m: {k: [protocol.mean_score(each) for each in v] for k, v in per.items()} for m, per in detail.items()
    }

    # method -> set -> per seed: the intervals' coverage and MSIS (AutoETS's own, Seqcast's calibrated)
    iscores: dict[str, dict[str, list[protocol.IntervalScore]]] = {}
    for s, series in work:
        ets = fc.get("AutoETS", {}).get(s.name)
        if ets is not None and ets.bands is not None:
            iscores.setdefault("AutoETS", {})[s.name] = [protocol.score_intervals(series, ets.bands, s)]
        if s.name in forecasts.get(tables.SEQCAST, {}):
            iscores.setdefault(tables.SEQCAST, {})[s.name] = [
                protocol.score_intervals(series, runs[s.name][seed]["bands"], s) for seed in seeds
            ]

    everything = protocol.with_best_classical(scores)
    shown_runs = {k: v for k, v in runs.items() if not any("pending" in r for r in v.values())}
    text = tables.report(everything, methods, [s.name for s, _ in work], shown_runs, iscores)
    pending = {
        k: next(iter(v.values()))["pending"]
        for k, v in runs.items()
        if any("pending" in r for r in v.values())
    }
    notes = [f"Seqcast pending on {k}: {why}." for k, why in pending.items()]
    notes += other_seasons(work)
    notes += [
        f"{k}: {len(v)} series skipped as too short ({', '.join(v[:5])}...)." for k, v in skipped.items()
    ]
    head = [
        f"Command: `{shown_command(sys.argv[1:] if argv is None else argv)}`  ",
        f"Run {started:%Y-%m-%d %H:%M} UTC on {machine()}; "
        + ", ".join(f"{k} {v}" for k, v in versions().items())
        + ".  ",
        ("" if args.anchors_only else f"Seqcast seeds: {' '.join(map(str, seeds))}; ")
        + f"classical anchors fitted in {anchor_s:.0f}s (0 when every forecast was cached).",
    ]
    report = (
        "\n".join(head) + "\n\n" + text + ("\n" + "\n".join(f"* {n}" for n in notes) + "\n" if notes else "")
    )
    print(report)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    fit_s = {m: {k: f.seconds for k, f in per.items()} for m, per in fc.items()}
    args.json.write_text(
        json.dumps(to_json(work, scores, detail, fit_s, runs, seeds, head, skipped, iscores), indent=1) + "\n"
    )
    print(f"results: {args.json}", file=sys.stderr)
    if args.update_doc:
        tables.update_doc(args.update_doc, report, DOC_START, DOC_END)
    return 0


def to_json(
    work: list[tuple[DataSet, list[Series]]],
    scores: dict[str, dict[str, list[Score]]],
    detail: dict[str, dict[str, list[list[Score]]]],
    fit_s: dict[str, dict[str, float]],
    runs: dict[str, dict[int, dict[str, Any]]],
    seeds: list[int],
    head: list[str],
    skipped: dict[str, list[str]],
    iscores: dict[str, dict[str, list[protocol.IntervalScore]]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"about": head, "seeds": seeds, "versions": versions(), "sets": {}}
    for s, series in work:
        entry: dict[str, Any] = {
            "protocol": asdict(s),
            "series": [x.id for x in series],
            "skipped": skipped.get(s.name, []),
            "methods": {m: [asdict(x) for x in per[s.name]] for m, per in scores.items() if s.name in per},
            # per method, per seed: each series' MASE, in the order of "series"
            "series_mase": {
                m: [[x.mase for x in seed] for seed in per[s.name]]
                for m, per in detail.items()
                if s.name in per
            },
            "anchor_fit_s": {m: per[s.name] for m, per in fit_s.items() if m in CLASSICAL and s.name in per},
        }
        entry["intervals"] = {
            m: [asdict(x) for x in per[s.name]] for m, per in (iscores or {}).items() if s.name in per
        }
        if s.name in runs:
            entry["seqcast_runs"] = {
                str(seed): {k: v for k, v in r.items() if k not in ("forecast", "bands")}
                for seed, r in runs[s.name].items()
            }
        out["sets"][s.name] = entry
    return out


if __name__ == "__main__":
    sys.exit(main())
