"""Split-conformal prediction intervals: calibrated by the trainer, served by ``/v1`` and ``/v2``.

Calibration (``calibrate``) uses rolling-origin windows: the recipe's chosen
model, as chosen, forecasts every window before the test split (the training
and validation origins; a big panel's random subset), as its fixed bases were
ranked; a hand-written model its validation windows. Fixed bases learn no
weights from those windows, though the best settings were picked on them;
ridge parts and networks fit the training ones: so their errors there are a
little optimistic. Two dozen validation windows
span one stretch of a series, the whole history its turns and quiet spells
too, and calibrating on it covered better and scored better on validation
windows alone (docs/accuracy.md, "Prediction intervals"). Window ``i`` of
``n`` (every origin of every series) gives, for each horizon step ``k`` and
target ``j``, the score::

    score[i, k, j] = |y[i, k, j] - forecast[i, k, j]| / spread(x[i])[j]

where ``spread`` is the mean absolute one-step change of the target over the
input window: the window's own yardstick, as MASE's is the series', so one
calibration serves a series ten times larger with a range ten times wider,
and every series of a panel pools into one calibration.

Errors grow with the horizon, so each step has its own width; but a quantile
per step of two dozen windows is coarse, and no window count under 19
reaches 95 %. So the scores are normalised per step by their mean over the
windows, ``ratio[i, k, j] = score[i, k, j] / mean_i score[i, k, j]``, the
``n x horizon`` ratios of a target are pooled, and the width at level ``L``
and step ``k`` is ``mean_i score[i, k, j]`` times the conformal quantile of
the pooled ratios: their ``ceil((N + 1) L / 100)``-th smallest of ``N``
(split conformal prediction with normalised scores; Angelopoulos and Bates,
"A gentle introduction to conformal prediction", 2021; Lei et al. 2018). The
levels served stop at ``100 N / (N + 1)`` %; the steps of one window are not
independent, so read it as a ceiling, not a promise.

A panel pools its series, so one calibration gives a smooth series the range of a
noisy one. Each series of a panel (``series``: every window's series id) also
gets a factor per target: the mean of its windows' ratios (over the steps),
relative to the mean over every window and shrunk towards 1 by
``SHRINK`` windows' worth; the ratios divided by their series' factor are
pooled again into ``series_widths``, and a request's series with a known id is
served ``series_widths × factor`` (exchangeable within the series, as the
pooled one is over the panel: Lei et al.'s locally weighted scores with a
per-series weight). On us_employment's validation windows it halved the
interval score (docs/accuracy.md, "Prediction intervals").

Serving (``bounds``): ``forecast ± width(L) × spread(x)`` per step and
target, ``width`` linear between the grid's levels (and from 0 at level 0);
lower bounds are clipped at 0 for a model trained only on non-negative values.
Numpy only, a few array operations per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.bundle.manifest import Intervals

# The levels calibrated: every whole percent, then the finer tail users ask for (97.5, 99.5, 99.9),
# each kept only where there are errors enough; the highest feasible level closes the grid.
GRID = (*range(1, 98), 97.5, 98, 99, 99.5, 99.9)
# A window that does not move still gets a yardstick: a thousandth of its level.
STILL = 1e-3
TINY = 1e-12  # an all-zero window: widths collapse to (almost) nothing


def spread(x: np.ndarray, targets: int) -> np.ndarray:
    """float64 ``(batch, targets)``: the mean absolute one-step change of each target over the
    window ``x`` (``(batch, time, features)``, targets first), floored at ``STILL`` times its mean
    absolute level."""
    # float64 sums: float32 ones overflow for windows of values near 1e37, which float32 holds.
    # Sums over n, not np.mean and np.diff: their Python wrappers cost more than the arithmetic
    # on a one-series request (bench/serve_bench.py).
    v = x[..., :targets]
    n = v.shape[1]
    floor = STILL * np.abs(v).sum(axis=1, dtype=np.float64) / n + TINY
    if n < 2:
        return floor
    change = np.abs(v[:, 1:] - v[:, :-1]).sum(axis=1, dtype=np.float64) / (n - 1)
    return np.maximum(change, floor)


def max_level(scores: int) -> float:
    """The highest level ``scores`` pooled calibration scores support, in percent: ``100 N / (N + 1)``."""
    return 100.0 * scores / (scores + 1)


# A panel calibrates on each series' RECENT newest windows only: the near future is more like its
# recent past than its whole history (weighted conformal prediction under drift; Barber et al.
# 2023), and a panel has errors enough there (148 series x 24 windows x 18 steps). On
# us_employment's newer validation windows: 85.5 / 96.4 % coverage at 80 / 95 and interval score
# 3.3, against 90.6 / 98.5 and 4.1 from every window (docs/accuracy.md). One series keeps its
# whole history: 24 windows alone covered worse (the validation-only calibration).
RECENT = 24

# A series' factor is shrunk towards the panel's 1 as if SHRINK windows of the panel's mean were
# added to its own: a series with few windows is not given a range from a handful of errors
# (0, 5 and 20 scored within 1 % of each other on us_employment's validation windows).
SHRINK = 5.0


def _conformal(ratios: np.ndarray, typical: np.ndarray, levels: list[float]) -> list[list[list[float]]]:
    """Per level, ``typical`` ``(horizon, targets)`` times the conformal quantile of the sorted
    pooled ``ratios`` ``(N, targets)``: the ``ceil((N + 1) L / 100)``-th smallest."""
    count = len(ratios)
    out = []
    for level in levels:
        # the epsilon keeps 24 at 96 % on the 24th
        rank = min(count, math.ceil((count + 1) * level / 100 - 1e-9))
        out.append((typical * ratios[rank - 1]).tolist())
    return out


def calibrate(
    x: np.ndarray,
    y: np.ndarray,
    forecast: np.ndarray,
    positive: bool = False,
    series: Sequence[str] | None = None,
    origins: np.ndarray | None = None,
) -> Intervals:
    """The calibration from past windows (every origin before the test split, or a hand-written
    model's validation windows).

    ``x``: ``(n, time, features)`` inputs; ``y`` and ``forecast``: ``(n, horizon, targets)``
    actuals and the model's forecasts of them. ``positive``: clip lower bounds at 0. ``series``:
    each window's series id (``n``); with two series or more, each gets its own factor, and with
    ``origins`` (``(n,)``, each window's position in its series) only each series' ``RECENT``
    newest windows calibrate.
    """
    if series is not None and len(series) != len(y):
        raise ValueError(f"calibration needs a series id per window: {len(series)} for {len(y)}")
    if series is not None and origins is not None and len(set(series)) > 1:
        keep = recent(np.asarray(series, dtype=object), np.asarray(origins))
        x, y, forecast = x[keep], y[keep], forecast[keep]
        series = [series[int(i)] for i in np.flatnonzero(keep)]
    n, horizon, targets = y.shape if y.ndim == 3 else (0, 0, 0)
    if n < 1 or y.shape != forecast.shape or len(x) != n:
        raise ValueError(f"calibration needs matching windows: x {x.shape}, y {y.shape}, {forecast.shape}")
    scores = np.abs(y.astype(np.float64) - forecast) / spread(x, targets)[:, None, :]  # (n, horizon, targets)
    if not np.isfinite(scores).all():
        raise ValueError(
            "calibration scores are not finite: the model's forecasts of past windows overflowed"
        )
    typical = np.maximum(scores.mean(axis=0), TINY)  # (horizon, targets): each step's mean score
    ratios = scores / typical  # (n, horizon, targets)
    count = n * horizon
    top = max_level(count)
    levels = [float(level) for level in GRID if level <= top]
    if not levels or levels[-1] < top:
        levels.append(round(top, 6))
    pooled = np.sort(ratios.reshape(count, targets), axis=0)  # pooled over steps (and series)
    widths = _conformal(pooled, typical, levels)
    factors: dict[str, list[float]] = {}
    series_widths: list[list[list[float]]] = []
    if series is not None:
        ids = np.asarray(series, dtype=object)
        keys, which = np.unique(ids, return_inverse=True)
        if len(keys) > 1:
            per_window = ratios.mean(axis=1)  # (n, targets); its mean over every window is 1
            sums = np.zeros((len(keys), targets))
            np.add.at(sums, which, per_window)
            counts = np.bincount(which, minlength=len(keys))[:, None]
            factor = np.maximum((sums + SHRINK) / (counts + SHRINK), TINY)  # (series, targets)
            own = np.sort((ratios / factor[which][:, None, :]).reshape(count, targets), axis=0)
            series_widths = _conformal(own, typical, levels)
            factors = {str(key): [round(float(v), 6) for v in f] for key, f in zip(keys, factor, strict=True)}
    return Intervals(
        windows=n,
        errors=count,
        levels=levels,
        widths=widths,
        positive=positive,
        series=factors,
        series_widths=series_widths,
    )


def recent(series: np.ndarray, origins: np.ndarray, count: int = RECENT) -> np.ndarray:
    """Boolean ``(n,)``: each series' ``count`` windows of the largest origins."""
    order = np.lexsort((-origins, series))  # by series, newest first
    ids = series[order]
    first = np.r_[True, ids[1:] != ids[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0))
    keep = np.zeros(len(series), bool)
    keep[order[np.arange(len(ids)) - start < count]] = True
    return keep


CACHED_LEVELS = 64  # level lists whose widths a calibration keeps (any client may ask any level)


def width(intervals: Intervals, level: float, known: bool = False) -> np.ndarray:
    """float64 ``(horizon, targets)``: half-widths at ``level`` (in spreads; ``known``: in spreads
    times a known series' factor), linear between levels."""
    grid, table = intervals.series_table if known else intervals.table
    if not 0 < level <= grid[-1]:
        raise ValueError(f"level {level:g} is outside (0, {grid[-1]:g}]")
    above = int(np.searchsorted(grid, level))  # grid[above - 1] < level <= grid[above]
    lo, hi = grid[above - 1], grid[above]
    share = (level - lo) / (hi - lo)
    return np.asarray((1 - share) * table[above - 1] + share * table[above])


def widths(intervals: Intervals, levels: Sequence[float], known: bool = False) -> np.ndarray:
    """float64 ``(levels, horizon, targets)`` (``known``: ``series_widths``'); kept per calibration
    for the last few level lists asked (most clients ask the same ones), at most ``CACHED_LEVELS``."""
    key = (tuple(levels), known)
    cached = intervals.cache.get(key)
    if cached is None:
        cached = np.stack([width(intervals, level, known) for level in levels])
        if len(intervals.cache) < CACHED_LEVELS:
            intervals.cache[key] = cached
    return np.asarray(cached)


def series_factors(intervals: Intervals, ids: Sequence[str | None]) -> np.ndarray | None:
    """float64 ``(batch, targets)``: each requested series' factor, NaN where its id is not one of
    the panel's (or absent); None when no id is known (the pooled widths serve every series)."""
    if not intervals.series:
        return None
    found = intervals.factors
    rows = [found.get(key) if key is not None else None for key in ids]
    if all(row is None for row in rows):
        return None
    unknown = np.full(intervals.shape[1], np.nan)
    return np.stack([unknown if row is None else row for row in rows])


# lower, then upper: one array holds both bounds of every level
SIDES = np.array([-1.0, 1.0]).reshape(2, 1, 1, 1, 1)


def both_bounds(
    intervals: Intervals,
    x: np.ndarray,
    forecast: np.ndarray,
    levels: Sequence[float],
    learned: np.ndarray | None = None,
    factors: np.ndarray | None = None,
) -> np.ndarray:
    """float32 ``(2, levels, batch, steps, targets)``: the lower (``[0]``) and upper (``[1]``)
    bounds of every level for ``forecast`` (``(batch, steps, targets)``, steps up to the
    calibrated horizon) from input windows ``x``; ``factors`` (``series_factors``): a panel's
    known series get their own widths.

    A quantile head's (``method`` "quantile") are the graph's own, ``learned``
    ``(2, learned levels, batch, horizon, targets)``: the levels asked are picked from it.
    One array for everything: a request's cost is a fixed count of numpy calls, whatever it asks.
    """
    steps, targets = forecast.shape[1], forecast.shape[2]
    if intervals.method == "quantile":
        if learned is None:
            raise ValueError("a quantile head's bounds come from its graph: pass learned")
        picked = learned[:, [intervals.levels.index(level) for level in levels], :, :steps]
        if intervals.positive:
            np.maximum(picked[0], 0.0, out=picked[0])
        return picked
    half = widths(intervals, levels)[:, :steps, None]  # (levels, steps, 1, targets)
    if factors is not None:  # (levels, steps, batch, targets): a known series' own, else the pooled
        own = widths(intervals, levels, known=True)[:, :steps, None] * factors
        half = np.where(np.isnan(factors), half, own)
    # (levels, batch, steps, targets)
    reach = half.transpose(0, 2, 1, 3) * spread(x, targets)[None, :, None, :]
    both = np.add(forecast, SIDES * reach, dtype=np.float32)
    if intervals.positive:
        np.maximum(both[0], 0.0, out=both[0])
    return both


def stacked_bounds(
    intervals: Intervals,
    x: np.ndarray,
    forecast: np.ndarray,
    levels: Sequence[float],
    learned: np.ndarray | None = None,
    factors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(lower, upper)``, each ``(levels, batch, steps, targets)`` (``both_bounds``)."""
    both = both_bounds(intervals, x, forecast, levels, learned, factors)
    return both[0], both[1]


def bounds(
    intervals: Intervals,
    x: np.ndarray,
    forecast: np.ndarray,
    levels: Sequence[float],
    learned: np.ndarray | None = None,
    factors: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level: float32 ``(lower, upper)``, each shaped like ``forecast``
    (``(batch, steps, targets)``, steps up to the calibrated horizon), from input windows ``x``."""
    lower, upper = stacked_bounds(intervals, x, forecast, levels, learned, factors)
    return [(lower[i], upper[i]) for i in range(len(levels))]


def learned_only(intervals: Intervals, levels: Sequence[float]) -> list[int]:
    """Positions in ``levels`` of those a quantile head did not learn (none for a conformal
    calibration, which serves any level up to ``max_level``)."""
    if intervals.method != "quantile":
        return []
    return [i for i, level in enumerate(levels) if level not in intervals.levels]


def learned_levels(intervals: Intervals) -> str:
    """``"80, 95"``: the levels a quantile head learned, for messages."""
    return ", ".join(level_key(level) for level in intervals.levels)


def level_key(level: float) -> str:
    """How a level names its interval in answers: 80 -> "80", 97.5 -> "97.5"."""
    return f"{level:g}"
