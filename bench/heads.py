"""The recurrent heads side by side on the development collection's monthly sets.

Each head is an LSTM as a user would write it (a ``[model]`` section naming the cell and the
head; the window, split and training loop as ``training.recipe.resolve`` sets them for a
hand-written model), trained and forecast through its ONNX bundle with the accuracy
benchmark's protocol (bench/protocol.py: the last ``h`` points of each series, one origin):

* ``direct``: many-to-one, the forecast read from the encoder's outputs;
* ``seq2seq``: encoder-decoder, the decoder feeding each prediction back in;
* ``shift``: sequence-shift (many-to-many), a loss at every step of the input shifted by one,
  forecasts rolled on its own predictions;
* ``shift, short``: the same trained on contexts cut to any length from ``SHORT`` steps
  (``window.min_history``); it also forecasts the test from only the last ``CONTEXTS`` points,
  which measures what a short context costs (one-to-many);
* ``mlp``: the feed-forward baseline on the flattened window (one-to-one).

``--figure`` draws one panel per architecture on ``FIGURE_SET`` (docs/heads.png).

Scores: MASE per set (mean over series, then over seeds), geometric mean over sets, and the
error per horizon step (mean absolute error over the in-sample seasonal MAE, geometric mean
over sets). The model choice reads no test point; this compares fixed designs::

    PYTHONPATH=$PWD .venv/bin/python bench/heads.py --update-doc docs/models.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import protocol, tables  # noqa: E402
from bench.protocol import BY_NAME, SETS, DataSet, Series, gmean  # noqa: E402

DOC_START, DOC_END = "<!-- heads:start -->", "<!-- heads:end -->"
SHORT = 3  # the shortest history the short-context model is trained for
CONTEXTS = (3, 6, 12)  # history lengths it forecasts the test from, beside its whole window
HEADS: dict[str, dict[str, Any]] = {
    "direct": {"cell": "lstm", "head": "direct"},
    "seq2seq": {"cell": "lstm", "head": "seq2seq"},
    "shift": {"cell": "lstm", "head": "shift"},
    "shift, short": {"cell": "lstm", "head": "shift", "min_history": SHORT},
    "mlp": {"head": "mlp"},
}
FIGURE_SET = "airline"  # the set whose forecasts docs/heads.png draws, one panel per architecture
PANELS = (  # (title, head, history length: None for the whole window)
    ("many-to-one: direct", "direct", None),
    ("many-to-many: shift", "shift", None),
    (f"one-to-many: shift from the last {SHORT} values", "shift, short", SHORT),
    ("one-to-one: mlp", "mlp", None),
)
PANEL_STRIDE = 12  # training windows of a panel (us_employment): one origin a year per series
MONTHLY = tuple(s.name for s in SETS if s.frequency == "monthly")


def job(args: tuple[DataSet, list[Series], Path, str, int]) -> dict[str, Any]:
    """One head on one set and seed: its test forecast ``(series, h)`` (and short-context ones)."""
    from bench.seqcast_runner import seqcast_forecast

    s, series, root, head, seed = args
    contexts = CONTEXTS if "min_history" in HEADS[head] else ()
    # A hand-written network trains on every window (the recipe on a subset): the panel's 148
    # series of 80 years give 130,000; every STRIDE-th keeps it near the others' count.
    model = HEADS[head] | ({"stride": PANEL_STRIDE} if s.layout == "long" else {})
    t0 = time.perf_counter()
    try:
        r = seqcast_forecast(s, series, root, seed, threads=1, model=model, contexts=contexts)
    except Exception as exc:  # reported in the table, never dropped silently
        logging.getLogger("bench.heads").exception("%s %s seed %d failed", s.name, head, seed)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"forecast": r.forecast, "short": r.short, "seconds": time.perf_counter() - t0}


def step_errors(series: list[Series], forecast: np.ndarray, s: DataSet) -> np.ndarray:
    """``(h,)``: each step's absolute error over the series' in-sample seasonal MAE, mean over series."""
    rows = []
    for x, f in zip(series, forecast, strict=True):
        insample, test = x.split(s.h)
        rows.append(np.abs(test - f) / protocol.scale(insample, s.season))
    return np.mean(rows, axis=0)


def report(work: list[tuple[DataSet, list[Series]]], done: dict[tuple[str, str, int], dict[str, Any]],
           seeds: list[int]) -> str:  # fmt: skip
    """The markdown tables: MASE per set and head, error by horizon step, and by history length."""
    names = list(HEADS)
    mase: dict[str, dict[str, float]] = {h: {} for h in names}
    steps: dict[str, list[np.ndarray]] = {h: [] for h in names}
    short: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {h: [] for h in names}
    for s, series in work:
        for head in names:
            runs = [done[(s.name, head, seed)] for seed in seeds]
            if any("forecast" not in r for r in runs):
                continue
            mase[head][s.name] = float(
                np.mean([protocol.score_set(series, r["forecast"], s).mase for r in runs])
            )
            steps[head].append(np.mean([step_errors(series, r["forecast"], s) for r in runs], axis=0))
            seconds[head] += [r["seconds"] for r in runs]
            for n in runs[0]["short"] or {}:
                per_seed = [protocol.score_set(series, r["short"][n], s).mase for r in runs]
                short.setdefault(f"last {n}", []).append(float(np.mean(per_seed)))
        snaive = np.stack([np.resize(x.split(s.h)[0][-s.season :], s.h) for x in series])
        mase.setdefault("seasonal naive", {})[s.name] = protocol.score_set(series, snaive, s).mase
    columns = [*names, "seasonal naive"]
    lines = [
        "| set | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for s, _ in work:
        cells = [f"{mase[c][s.name]:.3f}" if s.name in mase[c] else "failed" for c in columns]
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    complete = [c for c in columns if len(mase[c]) == len(work)]
    best = min(gmean(list(mase[c].values())) for c in complete if c in HEADS)
    lines.append(
        "| **geometric mean** | "
        + " | ".join(f"**{gmean(list(mase[c].values())):.3f}**" if c in complete else "" for c in columns)
        + " |"
    )
    lines.append(
        "| / best head | "
        + " | ".join(f"{gmean(list(mase[c].values())) / best:.3f}" if c in complete else "" for c in columns)
        + " |"
    )
    lines.append(
        "| training + export, median s | "
        + " | ".join(f"{np.median(seconds[c]):.0f}" if seconds.get(c) else "" for c in columns)
        + " |"
    )
    h = min(len(v[0]) for v in steps.values() if v)
    lines += [
        "",
        "Error by horizon step (mean absolute error over the in-sample seasonal MAE, geometric mean "
        "over the sets):",
        "",
        "| head | " + " | ".join(str(k + 1) for k in range(h)) + " |",
        "|---|" + "---:|" * h,
    ]
    for head in names:
        if steps[head]:
            per_step = np.exp(np.mean(np.log(np.stack([v[:h] for v in steps[head]])), axis=0))
            lines.append(f"| {head} | " + " | ".join(f"{v:.2f}" for v in per_step) + " |")
    if short:
        whole = gmean(list(mase["shift, short"].values()))
        lines += [
            "",
            f"The short-context model ({SHORT} steps and up) forecasting the same test points from "
            "only the last few values (geometric mean MASE over the sets):",
            "",
            "| history | " + " | ".join(short) + " | its whole window |",
            "|---|" + "---:|" * (len(short) + 1),
            "| MASE | " + " | ".join(f"{gmean(v):.3f}" for v in short.values()) + f" | {whole:.3f} |",
        ]
    return "\n".join(lines)


def figure(work: list[tuple[DataSet, list[Series]]], done: dict[tuple[str, str, int], dict[str, Any]],
           seed: int, path: Path) -> None:  # fmt: skip
    """One panel per architecture: the history, the test points and the forecast of ``FIGURE_SET``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, series = next((s, series) for s, series in work if s.name == FIGURE_SET)
    insample, test = series[0].split(s.h)
    shown = insample[-3 * s.season :]
    before = np.arange(-len(shown), 0)
    after = np.arange(s.h)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), sharey=True)
    for ax, (title, head, context) in zip(axes, PANELS, strict=True):
        r = done.get((s.name, head, seed), {})
        ax.plot(before, shown, color="black", lw=1, label="history")
        ax.plot(after, test, color="black", lw=1, ls="--", label="actual")
        if context is not None:
            ax.plot(before[-context:], shown[-context:], "o", color="tab:orange", ms=4, label="what it saw")
        f = r.get("short", {}).get(context) if context is not None else r.get("forecast")
        if f is not None:
            mase = protocol.score_set(series[:1], f[:1], s).mase
            ax.plot(after, f[0], color="tab:blue", lw=1.5, label=f"forecast (MASE {mase:.2f})")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{FIGURE_SET}: the last {s.h} months forecast by each architecture", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=list(MONTHLY), choices=list(BY_NAME), metavar="NAME")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=2, help="runs at once")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--update-doc", type=Path, help="replace the text between the heads markers")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "heads.png")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = datetime.now(UTC)
    work = [(BY_NAME[n], protocol.load(BY_NAME[n], args.data)[0]) for n in args.only]
    todo = [(s, series, args.data, head, seed) for s, series in work for head in HEADS for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(job, todo))
    done = {(t[0].name, t[3], t[4]): r for t, r in zip(todo, results, strict=True)}
    for key, r in done.items():
        if "error" in r:
            print(f"failed: {key}: {r['error']}", file=sys.stderr)
    command = "bench/heads.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (
        f"`{command.strip()}`, {started:%Y-%m-%d %H:%M} UTC, seeds {' '.join(map(str, args.seeds))}; "
        "MASE on the test points (mean over series and seeds):\n\n" + report(work, done, args.seeds)
    )
    print(text)
    if FIGURE_SET in args.only:
        figure(work, done, args.seeds[0], args.figure)
    if args.update_doc:
        tables.update_doc(args.update_doc, text, DOC_START, DOC_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
