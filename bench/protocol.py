"""The accuracy benchmark's protocol: the data sets, the holdout, the metrics and the aggregation.

M4 protocol: hold out the last ``h`` points of each series and forecast them
from one origin; MASE is the mean absolute error scaled by the in-sample
(everything before the test points) mean absolute seasonal difference, lag 1
when the set has no season; sMAPE is the M4 one, in percent. A set's score is
the mean over its series; the aggregate is the geometric mean over sets.

Pure numpy/pandas: the tests run it in the project's runtime virtualenv.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

WORSE = 1.05  # "more than 5 % worse than the better of naive and seasonal naive"
BASELINES = ("naive", "snaive")
CLASSICAL = ("AutoETS", "AutoTheta", "AutoARIMA")
BEST_CLASSICAL = "best classical"  # per set, the lowest MASE of CLASSICAL (chosen knowing the test)


@dataclass(frozen=True)
class DataSet:
    """One file of /work/shared/datasets and how the protocol reads it."""

    name: str
    frequency: str  # a label for the tables
    h: int  # test points per series, forecast from one origin
    season: int  # seasonal naive lag, anchors' season_length and the MASE lag (1: none)
    targets: tuple[str, ...] = ()  # value columns that are series; empty: every column but the timestamp
    layout: str = "wide"  # wide: each value column is a series; long: one row per (series_id, timestamp)
    anchor_tail: int | None = None  # statsforecast anchors fit only the last N in-sample points
    approximate_arima: bool = False  # AutoARIMA's approximation=True (R's default for long series)
    other_season: int | None = None  # a longer season in the data: its seasonal naive is shown, not ranked
    note: str = ""

    @property
    def file(self) -> str:
        return f"{self.name}.csv"


HALF_HOURLY_TAIL = 1344  # 4 weeks: AutoARIMA of season 48 on more takes tens of minutes a fit

SETS: tuple[DataSet, ...] = (
    DataSet("airline", "monthly", 18, 12),
    DataSet("co2_monthly", "monthly", 18, 12),
    DataSet("nottem", "monthly", 18, 12),
    DataSet("sunspot_month", "monthly", 18, 12, note="season 12 is nominal (the real cycle is ~132)"),
    DataSet("lynx", "yearly", 6, 1, note="yearly: no season (the ~10-year cycle is not a calendar one)"),
    DataSet(
        "taylor",
        "half-hourly",
        96,
        48,
        anchor_tail=HALF_HOURLY_TAIL,
        approximate_arima=True,
        other_season=336,
        note="season 48 (daily); the weekly season 336 is shown beside it",
    ),
    DataSet(
        "elecdemand",
        "half-hourly",
        96,
        48,
        targets=("Demand",),
        anchor_tail=HALF_HOURLY_TAIL,
        approximate_arima=True,
        other_season=336,
        note="Demand only, univariately (covariates unused)",
    ),
    DataSet("uschange", "quarterly", 8, 4, note="% changes: sMAPE is unstable near zero"),
    DataSet("arrivals", "quarterly", 8, 4),
    DataSet("us_employment", "monthly", 18, 12, layout="long", approximate_arima=True),
    DataSet("h02", "monthly", 18, 12),
    DataSet("elecequip", "monthly", 18, 12),
    DataSet("debitcards", "monthly", 18, 12),
    DataSet("gas", "monthly", 18, 12),
    DataSet("UKDriverDeaths", "monthly", 18, 12),
    DataSet("qcement", "quarterly", 8, 4),
    DataSet("visnights", "quarterly", 8, 4),
    DataSet("hyndsight", "daily", 14, 7),
    DataSet("elecdaily", "daily", 14, 7, targets=("Demand",), note="Demand only, univariately"),
    DataSet("goog", "trading days", 14, 1, note="integer index; h as for daily data"),
    DataSet("BJsales", "integer index", 8, 1, note="no known frequency: h = 8 as M4's 'other' series"),
    DataSet("Nile", "yearly", 6, 1),
    DataSet("LakeHuron", "yearly", 6, 1),
)
BY_NAME = {s.name: s for s in SETS}
QUICK = ("airline", "nottem", "qcement", "Nile", "goog", "h02")


def min_insample(s: DataSet) -> int:
    """Fewest in-sample points a series needs: two seasons and a horizon (and 10), else skipped."""
    return max(2 * s.season + s.h, 10)


@dataclass
class Series:
    id: str
    values: np.ndarray  # (time,) float64, NaN-free

    def split(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """``(in-sample, test)``: the test is the last ``h`` points."""
        return holdout(self.values, h)


def holdout(values: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """``(in-sample, test)`` of a ``(time,)`` series: the test is its last ``h`` points."""
    if h <= 0 or len(values) <= h:
        raise ValueError(f"a series of {len(values)} points has no in-sample part before a test of {h}")
    return values[:-h], values[-h:]


def _trim(sid: str, v: np.ndarray) -> np.ndarray:
    """Drop NaN at the ends (a series may start late); NaN inside is an error."""
    ok = np.flatnonzero(~np.isnan(v))
    if not len(ok):
        return v[:0]
    v = v[ok[0] : ok[-1] + 1]
    if np.isnan(v).any():
        raise ValueError(f"series {sid!r} has missing values inside")
    return v


def load(s: DataSet, root: Path) -> tuple[list[Series], list[str]]:
    """The set's series, and the ids of those skipped as too short for the protocol."""
    df = pd.read_csv(root / s.file)
    raw: list[tuple[str, np.ndarray]]
    if s.layout == "long":
        df = df.sort_values(["series_id", "timestamp"], kind="stable")
        raw = [(str(k), g["value"].to_numpy(np.float64)) for k, g in df.groupby("series_id", sort=False)]
    else:
        cols = list(s.targets) or [c for c in df.columns if c != "timestamp"]
        raw = [(c, df[c].to_numpy(np.float64)) for c in cols]
    kept: list[Series] = []
    skipped: list[Series] = []
    for sid, v in raw:
        v = _trim(sid, v)
        (kept if len(v) - s.h >= min_insample(s) else skipped).append(Series(sid, v))
    return kept, [x.id for x in skipped]


def data_hash(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()[:16]


# --- metrics -------------------------------------------------------------------------------------


def scale(insample: np.ndarray, season: int) -> float:
    """In-sample mean absolute seasonal difference (lag 1 when ``season`` is 1)."""
    lag = season if len(insample) > season else 1
    return float(np.mean(np.abs(insample[lag:] - insample[:-lag])))


def mase(insample: np.ndarray, test: np.ndarray, forecast: np.ndarray, season: int) -> float:
    s = scale(insample, season)
    err = float(np.mean(np.abs(test - forecast)))
    return err / s if s > 0 else (0.0 if err == 0 else math.inf)


def smape(test: np.ndarray, forecast: np.ndarray) -> float:
    """M4's sMAPE in percent: 200 * mean(|y - f| / (|y| + |f|)), a 0/0 term counting 0."""
    num = np.abs(test - forecast)
    den = np.abs(test) + np.abs(forecast)
    terms = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return float(200 * np.mean(terms))


def naive(insample: np.ndarray, h: int) -> np.ndarray:
    return np.repeat(insample[-1], h).astype(np.float64)


def seasonal_naive(insample: np.ndarray, h: int, season: int) -> np.ndarray:
    """The last season repeated; the naive when ``season`` is 1 or longer than the history."""
    if season <= 1 or len(insample) < season:
        return naive(insample, h)
    return np.resize(insample[-season:], h).astype(np.float64)


@dataclass(frozen=True)
class Score:
    """One method on one set (one seed): the means over its series."""

    mase: float
    smape: float
    n: int = 1  # series scored


def series_scores(series: Sequence[Series], forecasts: np.ndarray, s: DataSet) -> list[Score]:
    """Each series' score; ``forecasts``: ``(series, h)``, in the order of ``series``."""
    if forecasts.shape != (len(series), s.h):
        raise ValueError(f"{s.name}: forecasts of shape {forecasts.shape}, expected {(len(series), s.h)}")
    out = []
    for x, f in zip(series, forecasts, strict=True):
        insample, test = x.split(s.h)
        out.append(Score(mase(insample, test, f, s.season), smape(test, f)))
    return out


def mean_score(each: Sequence[Score]) -> Score:
    """A set's score from its series' scores: the means."""
    return Score(float(np.mean([x.mase for x in each])), float(np.mean([x.smape for x in each])), len(each))


def score_set(series: Sequence[Series], forecasts: np.ndarray, s: DataSet) -> Score:
    """The set's score: the mean over its series; ``forecasts``: ``(series, h)``."""
    return mean_score(series_scores(series, forecasts, s))


# --- intervals -----------------------------------------------------------------------------------

LEVELS = (80, 95)  # the interval levels scored: coverage at both, MSIS at 95 (M4's)
Bands = Mapping[int, tuple[np.ndarray, np.ndarray]]  # level -> (lower, upper), each (series, h)


def msis(insample: np.ndarray, test: np.ndarray, lower: np.ndarray, upper: np.ndarray, season: int) -> float:
    """M4's mean scaled interval score of a 95 % interval: the width, plus 2 / 0.05 times each miss,
    over the steps, scaled like MASE."""
    a = 0.05
    penalty = (upper - lower) + (2 / a) * np.maximum(lower - test, 0) + (2 / a) * np.maximum(test - upper, 0)
    s = scale(insample, season)
    err = float(np.mean(penalty))
    return err / s if s > 0 else (0.0 if err == 0 else math.inf)


@dataclass(frozen=True)
class IntervalScore:
    """One method's intervals on one set (one seed)."""

    coverage: dict[int, float]  # level -> share of the set's test points inside, in percent
    msis: float  # mean over series of the 95 % interval's MSIS
    points: int  # test points of the set


def score_intervals(series: Sequence[Series], bands: Bands, s: DataSet) -> IntervalScore:
    """Coverage pooled over the set's test points, MSIS the mean over its series."""
    tests = np.stack([x.split(s.h)[1] for x in series])  # (series, h)
    coverage = {}
    for level in LEVELS:
        lower, upper = bands[level]
        if lower.shape != tests.shape or upper.shape != tests.shape:
            raise ValueError(f"{s.name}: {level} % bounds of shape {lower.shape}, expected {tests.shape}")
        coverage[level] = float(np.mean((lower <= tests) & (tests <= upper)) * 100)
    lower, upper = bands[95]
    scores = [
        msis(x.split(s.h)[0], t, lo, up, s.season)
        for x, t, lo, up in zip(series, tests, lower, upper, strict=True)
    ]
    return IntervalScore(coverage, float(np.mean(scores)), tests.size)


# --- aggregation ---------------------------------------------------------------------------------

Scores = Mapping[str, Mapping[str, Sequence[Score]]]  # method -> set -> one Score per seed


def gmean(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if len(values) else math.nan


def median_mase(scores: Sequence[Score]) -> float:
    return float(np.median([x.mase for x in scores]))


def median_smape(scores: Sequence[Score]) -> float:
    return float(np.median([x.smape for x in scores]))


def with_best_classical(scores: Scores) -> dict[str, dict[str, list[Score]]]:
    """``scores`` plus the pseudo-method BEST_CLASSICAL: per set, the classical anchor with the
    lowest MASE (an oracle choice, since it looks at the test points)."""
    out = {m: {k: list(v) for k, v in per.items()} for m, per in scores.items()}
    if all(m in scores for m in CLASSICAL):
        common = set.intersection(*(set(scores[m]) for m in CLASSICAL))
        out[BEST_CLASSICAL] = {
            k: [min((scores[m][k][0] for m in CLASSICAL), key=lambda x: x.mase)] for k in sorted(common)
        }
    return out


def baseline(scores: Scores, name: str) -> float:
    """The better (lower MASE) of naive and seasonal naive on set ``name``."""
    return min(median_mase(scores[m][name]) for m in BASELINES)


def common_sets(scores: Scores, methods: Sequence[str]) -> list[str]:
    """Sets scored by every one of ``methods``, in the order of SETS."""
    have = [set(scores[m]) for m in methods if m in scores]
    both = set.intersection(*have) if have else set()
    return [s.name for s in SETS if s.name in both] + sorted(both - set(BY_NAME))


@dataclass(frozen=True)
class Aggregate:
    """One method over a list of sets."""

    sets: int
    mase: float  # median over seeds of the geometric mean over sets
    per_seed: tuple[float, ...]  # the geometric mean over sets, per seed
    smape: float  # median over seeds of the arithmetic mean over sets
    beats: int  # sets where its (median) MASE is below the better of naive and seasonal naive
    worse: int  # sets where it is more than 5 % above it


def aggregate(scores: Scores, method: str, sets: Sequence[str]) -> Aggregate:
    """``method`` over ``sets``; a method with fewer seeds than another is taken per its own seeds."""
    per = scores[method]
    seeds = max(len(per[k]) for k in sets) if sets else 0
    by_seed_mase, by_seed_smape = [], []
    for i in range(seeds):
        # A deterministic method has one entry: it stands for every seed.
        runs = [per[k][i] if i < len(per[k]) else per[k][-1] for k in sets]
        by_seed_mase.append(gmean([x.mase for x in runs]))
        by_seed_smape.append(float(np.mean([x.smape for x in runs])))
    beats = sum(median_mase(per[k]) < baseline(scores, k) for k in sets)
    worse = sum(median_mase(per[k]) > WORSE * baseline(scores, k) for k in sets)
    return Aggregate(
        sets=len(sets),
        mase=float(np.median(by_seed_mase)) if seeds else math.nan,
        per_seed=tuple(by_seed_mase),
        smape=float(np.median(by_seed_smape)) if seeds else math.nan,
        beats=beats,
        worse=worse,
    )
