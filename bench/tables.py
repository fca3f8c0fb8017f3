"""Markdown tables of the accuracy benchmark: per set, in aggregate, and Seqcast's runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bench.protocol import (
    BASELINES,
    BEST_CLASSICAL,
    BY_NAME,
    CLASSICAL,
    LEVELS,
    IntervalScore,
    Scores,
    aggregate,
    baseline,
    common_sets,
    gmean,
    median_mase,
    median_smape,
)

SEQCAST = "Seqcast"
LABELS = {"naive": "naive", "snaive": "seasonal naive"}


def label(method: str) -> str:
    return LABELS.get(method, method)


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(cells: Sequence[str], text: Sequence[int] = (0,)) -> list[str]:
    """A header; the columns at the ``text`` positions are left-aligned, the others right-aligned."""
    return [_row(cells), _row(["---" if i in text else "---:" for i in range(len(cells))])]


def update_doc(path: Path, text: str, start: str, end: str) -> None:
    """Replace what lies between the markers ``start`` and ``end`` in the Markdown file ``path``."""
    doc = path.read_text()
    i, j = doc.index(start) + len(start), doc.index(end)
    path.write_text(doc[:i] + "\n" + text.rstrip("\n") + "\n" + doc[j:])


def per_set(scores: Scores, methods: Sequence[str], sets: Sequence[str]) -> str:
    """MASE per set (median over seeds), with the ratios of the method under test (Seqcast)."""
    test = SEQCAST if SEQCAST in methods else None
    ratios = ["/ AutoETS", "/ AutoARIMA", "/ best classical"] if test else []
    lines = _head(["set", "freq", "h", "m", "series", *map(label, methods), *ratios], (0, 1))
    for name in sets:
        s = BY_NAME.get(name)
        n = scores.get("naive", {}).get(name)
        cells: list[object] = [
            name,
            s.frequency if s else "",
            s.h if s else "",
            s.season if s else "",
            n[0].n if n else "",
        ]
        best = baseline(scores, name) if all(name in scores.get(b, {}) for b in BASELINES) else math.nan
        for m in methods:
            got = scores.get(m, {}).get(name)
            if not got:
                cells.append("–")
                continue
            v = median_mase(got)
            cells.append(f"**{_f(v)}**" if m not in BASELINES and v < best else _f(v))
        if test:
            got = scores.get(test, {}).get(name)
            v = median_mase(got) if got else math.nan
            for ref in ("AutoETS", "AutoARIMA", BEST_CLASSICAL):
                r = scores.get(ref, {}).get(name)
                cells.append(_f(v / median_mase(r)) if r else "–")
        lines.append(_row(cells))
    return "\n".join(lines)


def per_set_smape(scores: Scores, methods: Sequence[str], sets: Sequence[str]) -> str:
    lines = _head(["set", *map(label, methods)])
    for name in sets:
        cells: list[object] = [name]
        for m in methods:
            got = scores.get(m, {}).get(name)
            cells.append(_f(median_smape(got), 2) if got else "–")
        lines.append(_row(cells))
    return "\n".join(lines)


def summary(scores: Scores, methods: Sequence[str], sets: Sequence[str]) -> str:
    """Every method over the same ``sets``: geometric-mean MASE, ratios, mean sMAPE and counts."""
    refs = {
        r: aggregate(scores, r, sets).mase for r in ("AutoETS", "AutoARIMA", BEST_CLASSICAL) if r in scores
    }
    lines = _head(
        [
            "method",
            "sets",
            "MASE (geo. mean)",
            "/ AutoETS",
            "/ AutoARIMA",
            "/ best classical",
            "sMAPE % (mean)",
            "beats naive & s. naive",
            "> 5 % worse than them",
            "per seed",
        ]
    )
    for m in [*methods, BEST_CLASSICAL]:
        if m not in scores:
            continue
        a = aggregate(scores, m, sets)
        ratios = [
            _f(a.mase / refs[r]) if r in refs else "–" for r in ("AutoETS", "AutoARIMA", BEST_CLASSICAL)
        ]
        seeds = " ".join(_f(v) for v in a.per_seed) if len(a.per_seed) > 1 else ""
        counts = ("–", "–") if m in BASELINES else (f"{a.beats}/{a.sets}", f"{a.worse}/{a.sets}")
        lines.append(_row([label(m), a.sets, _f(a.mase), *ratios, _f(a.smape, 2), *counts, seeds]))
    return "\n".join(lines)


def seqcast_runs(runs: Mapping[str, Mapping[int, Mapping[str, object]]], scores: Scores) -> str:
    """Per set: Seqcast's MASE per seed, training time and what the recipe chose."""
    lines = _head(["set", "MASE per seed", "train s (median)", "export s", "chosen (first seed)"], (0, 4))
    for name, by_seed in runs.items():
        seeds = sorted(by_seed)
        first = by_seed[seeds[0]]
        if "error" in first:
            lines.append(_row([name, "–", "–", "–", str(first["error"])]))
            continue
        mase = " ".join(_f(s.mase) for s in scores[SEQCAST][name])
        train = float(np.median([float(str(by_seed[k]["train_s"])) for k in seeds]))
        export = float(np.median([float(str(by_seed[k]["export_s"])) for k in seeds]))
        lines.append(_row([name, mase, f"{train:.1f}", f"{export:.1f}", f"`{first['chosen']}`"]))
    return "\n".join(lines)


IntervalScores = Mapping[str, Mapping[str, Sequence[IntervalScore]]]  # method -> set -> one per seed
WIDE_OFF = 10  # a set with enough test points whose coverage is this far from nominal is flagged
MANY_POINTS = 20  # ... "enough": the goal's threshold


def _median_coverage(scores: Sequence[IntervalScore], level: int) -> float:
    return float(np.median([x.coverage[level] for x in scores]))


def intervals(iscores: IntervalScores, sets: Sequence[str]) -> str:
    """Coverage at each level and MSIS per set (medians over seeds), then the aggregate: coverage
    as the mean over sets (each set counts once, as in the MASE aggregate), MSIS as the geometric
    mean, and the sets with at least MANY_POINTS test points whose coverage is more than WIDE_OFF
    points from nominal."""
    methods = [m for m in iscores if all(k in iscores[m] for k in sets)]
    cells = [f"{label(m)} {lv} %" for m in methods for lv in LEVELS] + [f"{label(m)} MSIS" for m in methods]
    lines = _head(["set", "test points", *cells])
    for name in sets:
        points = iscores[methods[0]][name][0].points if methods else 0
        row: list[object] = [name, points]
        row += [_f(_median_coverage(iscores[m][name], lv), 1) for m in methods for lv in LEVELS]
        row += [_f(float(np.median([x.msis for x in iscores[m][name]]))) for m in methods]
        lines.append(_row(row))
    summary_lines = _head(
        [
            "method",
            "sets",
            *[f"coverage {lv} % (mean)" for lv in LEVELS],
            "MSIS (geo. mean)",
            "/ AutoETS",
            f"sets ≥ {MANY_POINTS} points off by > {WIDE_OFF}",
        ],
        (0, 6),
    )
    ref = (
        gmean([float(np.median([x.msis for x in iscores["AutoETS"][k]])) for k in sets])
        if "AutoETS" in iscores
        else math.nan
    )
    for m in methods:
        cover = [float(np.mean([_median_coverage(iscores[m][k], lv) for k in sets])) for lv in LEVELS]
        msis = gmean([float(np.median([x.msis for x in iscores[m][k]])) for k in sets])
        off = [
            f"{k} ({lv}: {_median_coverage(iscores[m][k], lv):.0f})"
            for k in sets
            for lv in LEVELS
            if iscores[m][k][0].points >= MANY_POINTS
            and abs(_median_coverage(iscores[m][k], lv) - lv) > WIDE_OFF
        ]
        summary_lines.append(
            _row(
                [
                    label(m),
                    len(sets),
                    *[_f(c, 1) for c in cover],
                    _f(msis),
                    _f(msis / ref),
                    ", ".join(off) or "none",
                ]
            )
        )
    return "\n".join(summary_lines) + "\n\n" + "\n".join(lines)


def report(
    scores: Scores,
    methods: Sequence[str],
    sets: Sequence[str],
    runs: Mapping[str, Mapping[int, Mapping[str, object]]],
    iscores: IntervalScores | None = None,
) -> str:
    """The whole markdown report: aggregates first, then per set, then the intervals."""
    out = []
    common = common_sets(scores, methods)
    anchors = [m for m in methods if m != SEQCAST]
    out += [
        f"### Aggregate over the {len(common)} sets every method scored",
        "",
        summary(scores, methods, common),
    ]
    all_anchor = common_sets(scores, anchors)
    if len(all_anchor) > len(common):
        missing = ", ".join(sorted(set(all_anchor) - set(common)))
        out += [
            "",
            f"### Anchors over all {len(all_anchor)} sets (incl. {missing})",
            "",
            summary(scores, anchors, all_anchor),
        ]
    out += [
        "",
        "### MASE per set (median over seeds; bold: below the better of naive and seasonal naive)",
        "",
        per_set(
            scores, [*methods, BEST_CLASSICAL] if all(c in methods for c in CLASSICAL) else methods, sets
        ),
    ]
    out += ["", "### sMAPE % per set", "", per_set_smape(scores, methods, sets)]
    if runs:
        out += ["", "### Seqcast runs", "", seqcast_runs(runs, scores)]
    if iscores:
        interval_sets = [k for k in sets if all(k in per for per in iscores.values())]
        out += [
            "",
            f"### Prediction intervals over the {len(interval_sets)} sets (coverage: % of test points "
            "inside; MSIS of the 95 % interval; medians over seeds)",
            "",
            intervals(iscores, interval_sets),
        ]
    return "\n".join(out) + "\n"
