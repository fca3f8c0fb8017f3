"""Long memory, measured (training/memory.py): accuracy against lag for rnn, lstm and gru on the
latch task, and the gradient fade of the same trained networks, in one figure.

    PYTHONPATH=$PWD .venv/bin/python bench/long_memory.py --update-doc docs/models.md

Writes docs/long_memory.png and the table between the long-memory markers. Each (cell, lag)
trains in its own process (``--jobs`` at once) with one torch thread, so the run is the same on
any machine; about 1 minute on 2 cores (1.1 min measured, 2026-12-01).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import tables  # noqa: E402

DOC_START, DOC_END = "<!-- long-memory:start -->", "<!-- long-memory:end -->"
CELLS = ("rnn", "lstm", "gru")
LAGS = (5, 10, 20, 50, 100, 200)
FADE_LAG = 100  # the lag whose trained networks' gradient fade is drawn


def job(args: tuple[str, int, int, int, str]) -> dict[str, Any]:
    import torch

    from training import memory

    cell, lag, steps, seed, init = args
    torch.set_num_threads(1)
    t = memory.train(cell, lag, steps=steps, seed=seed, init=init)  # type: ignore[arg-type]
    fade = memory.gradient_fade(t.model, lag) if lag == FADE_LAG else []
    return {
        "cell": cell,
        "lag": lag,
        "accuracy": t.accuracy,
        "steps": t.steps,
        "seconds": t.seconds,
        "fade": fade,
    }


def figure(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    for cell in CELLS:
        rows = sorted((r for r in results if r["cell"] == cell), key=lambda r: r["lag"])
        left.plot([r["lag"] for r in rows], [100 * r["accuracy"] for r in rows], "o-", color=colours[cell],
                  label=cell.upper())  # fmt: skip
        fade = next((r["fade"] for r in rows if r["fade"]), None)
        if fade:
            right.semilogy(range(len(fade)), fade, color=colours[cell], label=cell.upper())
    left.axhline(50, color="grey", lw=0.8, ls=":")
    left.set(xscale="log", xlabel="lag (steps between the input and the answer)",
             ylabel="held-out accuracy, %", ylim=(40, 102),
             title="Recall the first sign after `lag` distractors")  # fmt: skip
    left.set_xticks(LAGS, [str(v) for v in LAGS])
    left.legend()
    right.set(xlabel="steps back from the answer", ylabel="mean |d output / d input|",
              title=f"Gradient fade of the networks trained at lag {FADE_LAG}")  # fmt: skip
    right.axvline(FADE_LAG, color="grey", lw=0.8, ls=":")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: list[dict[str, Any]], steps: int) -> str:
    by = {(r["cell"], r["lag"]): r for r in results}
    lines = [
        "| lag | " + " | ".join(f"{c.upper()} accuracy (steps)" for c in CELLS) + " |",
        "|---:|" + "---:|" * len(CELLS),
    ]
    for lag in sorted({r["lag"] for r in results}):
        cells = []
        for c in CELLS:
            r = by[(c, lag)]
            done = r["steps"] < steps or r["accuracy"] >= 0.99
            cells.append(f"{100 * r['accuracy']:.1f} % ({r['steps']}{'' if done else ', budget'})")
        lines.append(f"| {lag} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lags", type=int, nargs="+", default=list(LAGS))
    ap.add_argument("--steps", type=int, default=600, help="optimiser steps at most per (cell, lag)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=["chrono", "default"], default="chrono", help="the gated cells' gates")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "long_memory.png")
    ap.add_argument("--update-doc", type=Path, help="replace the text between the long-memory markers")
    args = ap.parse_args(argv)
    started, t0 = datetime.now(UTC), time.perf_counter()
    # the longest lags first: they take longest, so the pool ends together
    todo = [
        (c, lag, args.steps, args.seed, args.init) for lag in sorted(args.lags, reverse=True) for c in CELLS
    ]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(job, todo))
    wall = time.perf_counter() - t0
    figure(results, args.figure)
    command = "bench/long_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (
        f"`{command.strip()}`, {started:%Y-%m-%d %H:%M} UTC, {wall / 60:.1f} min with {args.jobs} jobs; "
        f"hidden 32, batch 64, Adam 1e-2, clipping at 1, at most {args.steps} steps, seed {args.seed}, "
        f"gates: {args.init}. Held-out accuracy on 1,024 sequences (chance 50 %) and the optimiser steps "
        f"taken (solved at 99 %):\n\n" + table(results, args.steps)
    )
    print(text)
    if args.update_doc:
        tables.update_doc(args.update_doc, text, DOC_START, DOC_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
