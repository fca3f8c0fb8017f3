"""Which windows the interval calibration should read, decided on validation windows alone.

For every set of the accuracy benchmark (seed 0, the default recipe as shipped), the validation
origins of each series are cut in two by time. The newer half is scored; the calibration is made
from what precedes it, two ways:

* ``validation``: the older half of the validation windows only (the first shipped calibration);
* ``history``: every training window too, i.e. every origin before the newer half;
* ``per series``: the same windows, a panel's series with widths of their own (the same as
  ``history`` on a set of one series);
* ``per series, recent``: and a panel calibrated on each series' 24 newest windows only (as
  shipped; ``service.bundle.intervals.RECENT``).

Both use the chosen model's forecasts as it was chosen (``training.recipe.Calibration``). The
scores are the coverage of the 80 % and 95 % intervals and the 95 % interval score scaled like
MSIS (by the in-sample seasonal MAE of the series), geometric mean over sets. The test split is
not read::

    PYTHONPATH=$PWD .venv/bin/python bench/interval_calibration.py --update-doc docs/accuracy.md
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import tables  # noqa: E402
from bench.protocol import BY_NAME, SETS, gmean, scale  # noqa: E402

DOC_START, DOC_END = "<!-- calibration:start -->", "<!-- calibration:end -->"
SOURCES = ("validation", "history", "per series", "per series, recent")
LEVELS = (80, 95)


@dataclass
class Result:
    name: str
    scored: int  # validation windows scored (the newer half)
    history: int  # training windows the history calibration adds
    scores: dict[str, tuple[float, float, float]]  # source -> (coverage 80, coverage 95, interval score)


def newer_half(series: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Boolean ``(n,)``: the newer half of each series' windows, by origin."""
    newer = np.zeros(len(series), bool)
    for k in np.unique(series):
        rows = np.flatnonzero(series == k)
        rows = rows[np.argsort(origin[rows], kind="stable")]
        newer[rows[len(rows) // 2 :]] = True
    return newer


def interval_scores(
    bands: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray, scales: np.ndarray
) -> tuple[float, float, float]:
    """``(coverage 80, coverage 95, mean 95 % interval score / scale)`` of the 80 % and 95 %
    ``(lower, upper)`` bands; arrays ``(n, h, targets)``, ``scales`` ``(n, 1, targets)``."""
    (lo80, up80), (lo95, up95) = bands
    a = 0.05
    penalty = (up95 - lo95) + (2 / a) * (np.maximum(lo95 - y, 0) + np.maximum(y - up95, 0))
    inside = [float(np.mean((lo <= y) & (y <= up)) * 100) for lo, up in bands]
    return inside[0], inside[1], float(np.mean(penalty / scales))


def run_set(name: str, data: Path, threads: int = 1) -> Result:
    """Train the recipe on set ``name`` and score both calibrations on its newer validation half."""
    from bench.seqcast_runner import config_for
    from service.bundle import intervals
    from training.config import Config
    from training.pipeline import train_run
    from training.windows import smallest_before_test

    s = BY_NAME[name]
    machine = {"threads": threads, "jobs": 1, "progress": False}  # sets run side by side instead
    cfg = Config.model_validate(config_for(s, data / s.file, 0, threads) | {"machine": machine})
    run = train_run(cfg)
    assert (
        run.choice is not None and run.choice.calibration is not None and run.choice.val_forecast is not None
    )
    val, cal = run.windows["val"], run.choice.calibration
    positive = smallest_before_test(run.dataset, run.config.split) >= 0
    # the training windows among the calibration's (a big panel's are a random subset)
    val_keys = set(zip(val.series.tolist(), val.origin.tolist(), strict=True))
    keys = zip(cal.windows.series.tolist(), cal.windows.origin.tolist(), strict=True)
    past = np.array([k not in val_keys for k in keys])
    newer = newer_half(val.series, val.origin)
    older = ~newer
    targets = len(run.dataset.targets)
    insample = [sx.values[: -s.h, :targets] for sx in run.dataset.series]
    scales = np.array(
        [[scale(v[:, j], s.season) for j in range(targets)] for v in insample]
    )  # (series, targets)
    y, f, x = val.y[newer], run.choice.val_forecast[newer], val.x[newer]
    ids = np.array([sx.id for sx in run.dataset.series], dtype=object)
    history = (
        np.concatenate([cal.windows.x[past], val.x[older]]),
        np.concatenate([cal.windows.y[past], val.y[older]]),
        np.concatenate([cal.forecast[past], run.choice.val_forecast[older]]),
    )
    known = list(ids[np.concatenate([cal.windows.series[past], val.series[older]])])
    origins = np.concatenate([cal.windows.origin[past], val.origin[older]])
    sources = {
        "validation": (val.x[older], val.y[older], run.choice.val_forecast[older], None, None),
        "history": (*history, None, None),
        "per series": (*history, known, None),
        "per series, recent": (*history, known, origins),
    }
    scores = {}
    for source, (cx, cy, cf, cids, corigins) in sources.items():
        calibration = intervals.calibrate(cx, cy, cf, positive=positive, series=cids, origins=corigins)
        asked = [min(level, calibration.max_level) for level in LEVELS]  # a short series' ceiling
        factors = intervals.series_factors(calibration, list(ids[val.series[newer]]))
        bands = intervals.bounds(calibration, x, f, asked, factors=factors)
        scores[source] = interval_scores(bands, y, scales[val.series[newer]][:, None, :])
    return Result(name, int(newer.sum()), int(past.sum()), scores)


def table(results: list[Result]) -> str:
    lines = [
        "| set | windows scored | training windows added | validation: 80 % | 95 % | score "
        "| history: 80 % | 95 % | score | per series: 80 % | 95 % | score "
        "| per series, recent: 80 % | 95 % | score |",
        "|---|---:|---:|" + "---:|" * 12,
    ]
    for r in results:
        cells = [f"{v:.1f}" if i < 2 else f"{v:.2f}" for src in SOURCES for i, v in enumerate(r.scores[src])]
        lines.append(f"| {r.name} | {r.scored} | {r.history} | " + " | ".join(cells) + " |")
    agg = []
    for src in SOURCES:
        a = np.array([r.scores[src] for r in results])
        agg += [f"**{a[:, 0].mean():.1f}**", f"**{a[:, 1].mean():.1f}**", f"**{gmean(list(a[:, 2])):.2f}**"]
    lines.append(
        f"| mean (coverage), geometric mean (score) over {len(results)} sets | | | " + " | ".join(agg) + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=[s.name for s in SETS], metavar="NAME")
    ap.add_argument("--jobs", type=int, default=2, help="sets trained at once")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--update-doc", type=Path, help="replace the text between the calibration markers")
    args = ap.parse_args(argv)
    with get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        by_name = {r.name: r for r in pool.starmap(run_set, [(n, args.data) for n in args.only])}
    results = [by_name[n] for n in args.only]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"Validation windows only, seed 0; `bench/interval_calibration.py --update-doc docs/accuracy.md`, "
        f"{stamp}. Coverage in % of the newer half's points, score: the 95 % interval score "
        "scaled like MSIS.\n\n" + table(results)
    )
    print(text)
    if args.update_doc:
        tables.update_doc(args.update_doc, text, DOC_START, DOC_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
