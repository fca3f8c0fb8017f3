"""The automatic recipe: a config that names only the data and the horizon gets a model chosen
on rolling-origin validation.

How the model is built:

1. the simple forecasts as linear bases (``training.bases``): naive, drift,
   seasonal naive and seasonal drift, damped seasonal, exponential smoothing,
   Holt, Holt-Winters, Theta (plain and deseasonalised), each over spans of
   two to five seasons and on a grid of smoothing settings, and ridge
   regressions on the window fitted to the training windows; for positive
   series each of them on the logarithms too (``exp`` of a linear forecast
   of the logs, for swings that grow with the level);
2. the combinations: the mean of the best setting of each of the ``COMBINE``
   best families, from the candidates on the values, on the logarithms, and
   on both; validation chooses among the three. A fixed base learns nothing
   from the data, so it is ranked on every origin before the test split
   (hundreds of windows, not the validation split's two dozen: the best of
   500 settings on 24 windows is mostly the luckiest); ridge, fitted on the
   training windows, on the validation windows. Averaging several good
   forecasts is steadier than choosing one (measured in docs/accuracy.md);
3. recurrent networks (GRU, LSTM) trained as corrections on top of the
   combination, as ES-RNN did: the base removes level and season, the
   network learns what remains. Training starts at the base ("epoch 0") and
   stops early on the newest training windows, never on the validation
   windows that rank it; the trained network is averaged with its base
   (``halve_correction``). No networks on windows over ``NETWORK_MAX_LENGTH``.

Guard rails, on the validation windows (every origin of the validation split):
the combination must beat the better of naive and seasonal naive by
``BASELINE_MARGIN`` and by two standard errors of the difference, or that
baseline is kept, so the model chosen never scores worse on validation than
it and a random walk keeps its last value; a network must beat the
combination the same way by ``NETWORK_MARGIN``, and in both halves of the
validation origins. The ridge parts of a linear winner are fitted again on
the training and validation windows before export; everything is one ONNX
graph.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from service.bundle.manifest import CandidateScore, ModelSpec, NetworkSpec, Selection
from training import bases, known
from training.config import Config, SplitConfig
from training.data import DataError, Dataset
from training.known import KnownEffect
from training.models import Forecaster, build_model, spec_for
from training.side_by_side import Job, train_all
from training.train import TrainResult, seed_everything
from training.windows import Windows, bounds, make_windows, smallest_before_test

log = logging.getLogger("seqcast.recipe")

Space = Literal["raw", "log"]  # where a candidate forecasts: raw values or their logarithms

RIDGE_PENALTIES = (0.1, 1.0, 10.0)
COMBINE = 7  # families averaged: the best of each, ranked on every origin before the test split
NETWORK_CELLS: tuple[Literal["gru", "lstm"], ...] = ("gru", "lstm")
NETWORK_SHARE = 0.5  # a network is published averaged with its base (halve_correction)
NETWORK_MARGIN = 0.02  # a network must beat the best linear candidate by 2 % on validation
MIN_TRAIN_WINDOWS = 8  # per series, below which the window or the validation is shortened
# Rolling origins in the validation split when the series allow it: with a handful of origins
# (a short horizon gives h + 1) the ranking of 40 candidates is noise.
VAL_ORIGINS = 24
BASELINE_MARGIN = 0.01  # a candidate must beat the better of naive and seasonal naive by 1 %
HISTORY_WINDOWS = 16384  # windows the fixed bases are ranked on at most
NETWORK_WINDOWS = 8192  # windows a network trains on at most (a random subset of a big panel's)
NETWORK_MAX_LENGTH = 300  # longer windows (a week of hours or half-hours) get no networks
NETWORK_STEPS = 8192 * 64  # and window steps per epoch at most (fewer windows when they are long)
STOP_SHARE = 0.2  # the newest training origins of each series that decide a network's early stopping
STANDARD_ERRORS = 2.0  # how clearly a candidate must beat the baseline (and a network the base)
MIN_BLOCKS = 4  # blocks of validation windows needed to estimate a standard error


@dataclass
class Scored:
    name: str
    kind: Literal["base", "combination", "network"]
    score: float  # validation MASE
    history: float | None = None  # MASE over every origin before the test split (fixed bases only)


@dataclass
class Calibration:
    """Windows and the chosen model's forecasts of them, for ``service.bundle.intervals.calibrate``.

    windows: ``x`` ``(n, length, features)``, ``y`` ``(n, horizon, targets)``.
    forecast: ``(n, horizon, targets)``.
    """

    windows: Windows
    forecast: np.ndarray


@dataclass
class Choice:
    """The model the recipe chose, and every candidate's validation score."""

    model: Forecaster
    result: TrainResult
    candidates: list[Scored]
    chosen: str
    baseline: float  # the better of naive and seasonal naive on validation
    windows: int  # validation windows scored
    notes: list[str] = field(default_factory=list)
    # (validation windows, horizon, targets): the chosen candidate's forecasts of the validation
    # windows as it was scored, before the ridge parts of a linear winner learn from those windows
    val_forecast: np.ndarray | None = None
    # The interval calibration's windows: every origin before the test split (a panel's random
    # subset), with the chosen candidate's forecasts of them as chosen (``calibration_windows``)
    calibration: Calibration | None = None

    @property
    def baseline_won(self) -> bool:
        """Whether the chosen model is the naive or the seasonal naive forecast itself."""
        return _is_baseline(self.chosen)

    def record(self) -> Selection:
        """The manifest's account of the choice."""
        best = next(c for c in self.candidates if c.name == self.chosen)
        return Selection(
            windows=self.windows,
            chosen=self.chosen,
            score=best.score,
            baseline=self.baseline,
            candidates=[
                CandidateScore(name=c.name, kind=c.kind, score=c.score, history=c.history)
                for c in self.candidates
            ],
            notes=self.notes,
        )


def seasons(season: int, frequency: str | None) -> list[int]:
    """Seasonal lags to try: the season, and the week for daily cycles of sub-daily data."""
    lags = [season] if season > 1 else []
    if season in (24, 48, 96, 144, 288):  # hourly ... 5-minute data: a day; add the week
        lags.append(7 * season)
    return lags


def resolve(cfg: Config, ds: Dataset, season: int) -> Config:
    """Fill in what follows from the horizon, the season and the data: the test split (one
    horizon, as in the M4 protocol), the validation split (``VAL_ORIGINS`` rolling origins, at
    least two horizons) and the window (five seasons or four horizons: the linear candidates
    try shorter spans inside it), shortened for short series."""
    h = cfg.window.horizon
    test = cfg.split.test or h
    n = min(len(s.values) for s in ds.series)
    lags = seasons(season, ds.frequency)
    longest = max(lags, default=1)
    # Longest first: five seasons (two for weekly cycles of sub-daily data) or four horizons, so
    # the linear candidates can try every span of window_lengths; shortened for short series.
    preferred = [k * longest for k in ((5, 3, 2) if longest < 100 else (2,)) if longest > 1]
    spans = [max(n, 2 * h, 8) for n in preferred] or [max(4 * h, 8)]
    length = cfg.window.length or spans[0]
    val = cfg.split.val or h + max(h, VAL_ORIGINS - 1)

    def room(length: int, val: int) -> int:  # training windows per series of the shortest
        return n - test - val - length - h + 1

    def fewer_origins(val: int, least: int) -> int:  # the validation split, shortened to make room
        return max(least, min(val, val - (MIN_TRAIN_WINDOWS - room(length, val))))

    def shorter_window(length: int, options: list[int]) -> int:
        for shorter in options:
            if room(length, val) >= MIN_TRAIN_WINDOWS:
                break
            length = min(length, shorter)
        return length

    # Short series give up, in turn: window spans down to two seasons, validation origins down
    # to two horizons' worth, the rest of the window, then validation down to one horizon.
    if cfg.window.length is None:
        length = shorter_window(length, spans[1:])
    if cfg.split.val is None:
        val = fewer_origins(val, 2 * h)
    if cfg.window.length is None:
        tail = [max(longest + 1, 2 * h, 8), max(longest + 1, h, 4), max(h, 4)]
        length = shorter_window(length, tail)
    if cfg.split.val is None:
        val = fewer_origins(val, h)
    if room(length, val) < 1:
        raise DataError(
            f"the shortest series has {n} points: too short for horizon {h} with a test split of {test}, "
            f"validation {val} and a window of {length}; shorten window.horizon or give longer series"
        )
    return cfg.model_copy(
        update={
            "split": SplitConfig(test=test, val=val),
            "window": cfg.window.model_copy(update={"length": length, "horizon": h}),
        }
    )


def _scales(ds: Dataset, split: SplitConfig, season: int) -> np.ndarray:
    """``(series, targets)``: mean absolute seasonal difference on each training split (lag 1
    when the series is shorter than two seasons); NaN-free, a flat series gets 1."""
    nt = len(ds.targets)
    out = np.ones((len(ds.series), nt))
    for k, s in enumerate(ds.series):
        train = s.values[: bounds(len(s.values), split)[0], :nt].astype(np.float64)
        lag = season if len(train) > 2 * season else 1
        diffs = np.abs(train[lag:] - train[:-lag])
        if len(diffs):
            mean = diffs.mean(axis=0)
            out[k] = np.where(mean > 1e-12, mean, 1.0)
    return out


class Validation:
    """Scores forecasts of the validation windows: mean absolute error scaled per series, and
    whether one candidate is clearly better than another."""

    def __init__(self, windows: Windows, scales: np.ndarray) -> None:
        self.windows = windows
        self.scales = scales  # (series, targets)
        self.scale = scales[windows.series][:, None, :]  # (n, 1, targets)
        self.errors: dict[str, np.ndarray] = {}  # candidate -> (n,) scaled error per window

    def score(self, name: str, pred: np.ndarray) -> float:
        """``pred``: ``(n, horizon, targets)`` raw; remembers the candidate's errors by ``name``."""
        errors = np.mean(np.abs(pred - self.windows.y) / self.scale, axis=(1, 2))
        self.errors[name] = errors
        return float(errors.mean())

    def score_base(self, name: str, matrix: np.ndarray, space: Space = "raw") -> float:
        nt = self.windows.y.shape[2]
        x = self.windows.x[..., :nt]
        if space == "log":
            return self.score(name, np.exp(bases.apply(matrix, np.log(x))))
        return self.score(name, bases.apply(matrix, x))

    def standard_error(self, a: str, b: str) -> float:
        """Standard error of the mean difference of two candidates' errors.

        Windows of neighbouring origins overlap and share their errors, so the
        difference is averaged over blocks of ``horizon`` consecutive origins of
        one series first; the blocks are close to independent. 0 when there
        are fewer than ``MIN_BLOCKS`` blocks to tell.
        """
        diff = self.errors[a] - self.errors[b]
        horizon = self.windows.y.shape[1]
        means = []
        for k in np.unique(self.windows.series):
            rows = np.flatnonzero(self.windows.series == k)
            d = diff[rows[np.argsort(self.windows.origin[rows])]]
            means += [d[i : i + horizon].mean() for i in range(0, len(d) - horizon + 1, horizon)]
        if len(means) < MIN_BLOCKS:
            return 0.0
        return float(np.std(means, ddof=1) / np.sqrt(len(means)))

    def better_in_both_halves(self, a: str, b: str) -> bool:
        """Whether ``a`` scores lower than ``b`` on the older half of each series' validation
        origins and on the newer half. With two dozen origins of an 18-step horizon the
        validation holds about two independent stretches; a network that wins one by a lot
        and loses the other learned that stretch, not the series (elecequip: 6 % ahead on
        validation, 2.7 times the error on the test split)."""
        older = np.zeros(len(self.windows), dtype=bool)
        for k in np.unique(self.windows.series):
            rows = np.flatnonzero(self.windows.series == k)
            rows = rows[np.argsort(self.windows.origin[rows])]
            older[rows[: len(rows) // 2]] = True
        diff = self.errors[a] - self.errors[b]
        return all(len(diff[half]) > 0 and float(diff[half].mean()) < 0 for half in (older, ~older))

    def clearly_better(self, candidate: Scored, reference: Scored, margin: float) -> bool:
        """Lower by ``margin`` (a fraction) and by ``STANDARD_ERRORS`` standard errors of the
        difference: a candidate no better than the reference passes about one time in 40."""
        gain = reference.score - candidate.score
        noise = STANDARD_ERRORS * self.standard_error(candidate.name, reference.name)
        return gain > margin * reference.score and gain > noise


def _flat(windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Every target of every window as a univariate window: ``(n * targets, length)``, ``(.., horizon)``."""
    nt = windows.y.shape[2]
    x = np.moveaxis(windows.x[..., :nt], 2, 1).reshape(-1, windows.x.shape[1]).astype(np.float64)
    y = np.moveaxis(windows.y, 2, 1).reshape(-1, windows.y.shape[1]).astype(np.float64)
    return x, y


def window_lengths(length: int, horizon: int, lags: list[int]) -> list[int]:
    """The spans of history the linear candidates try, longest (the whole input window) first:
    two, three and five seasons, or two and four horizons, as far as the window reaches. A base
    over a shorter span reads only the window's newest steps (its matrix is zero before them)."""
    season = max(lags, default=1)
    spans = {length} | {k * season for k in (2, 3, 5) if season > 1} | {2 * horizon, 4 * horizon}
    return sorted((n for n in spans if max(8, season + 1) <= n <= length), reverse=True) or [length]


def _padded(matrix: np.ndarray, length: int) -> np.ndarray:
    """A base over the newest ``matrix.shape[1]`` steps as a base over ``length`` steps."""
    out = np.zeros((matrix.shape[0], length))
    out[:, length - matrix.shape[1] :] = matrix
    return out


def linear_candidates(train: Windows, length: int, horizon: int, lags: list[int]) -> dict[str, np.ndarray]:
    """Name -> ``(horizon, length)`` matrix of every fixed base and every ridge fit on ``train``, over
    each span of ``window_lengths`` (``name@span`` for the shorter ones; a base that reads the
    same steps at every span, as naive does, is listed once)."""
    found: dict[str, np.ndarray] = {}
    x, y = _flat(train)
    for span in window_lengths(length, horizon, lags):
        tag = "" if span == length else f"@{span}"
        for lag in lags or [1]:
            for b in bases.fixed(span, horizon, lag):
                matrix = _padded(b.matrix, length)
                if b.name in found and np.array_equal(found[b.name], matrix):
                    continue
                found.setdefault(b.name + tag, matrix)
        for penalty in RIDGE_PENALTIES:
            found[f"ridge[{penalty:g}]{tag}"] = _padded(bases.ridge(x[:, -span:], y, penalty), length)
    return found


def _in_space(windows: Windows, space: Space) -> Windows:
    """The windows with their targets as the model of ``space`` sees them (logarithms for log)."""
    if space == "raw":
        return windows
    nt = windows.y.shape[2]
    x = windows.x.copy()
    x[..., :nt] = np.log(x[..., :nt])
    return Windows(x, np.log(windows.y), windows.series, windows.origin)


def _merged(windows: list[Windows]) -> Windows:
    return Windows(
        x=np.concatenate([w.x for w in windows]),
        y=np.concatenate([w.y for w in windows]),
        series=np.concatenate([w.series for w in windows]),
        origin=np.concatenate([w.origin for w in windows]),
    )


def _bare(name: str) -> tuple[Space, str]:
    """``"log mean(...)"`` -> ``("log", "mean(...)")``: a candidate's space and its base's name."""
    return ("log", name[4:]) if name.startswith("log ") else ("raw", name)


def _rows(windows: Windows, rows: np.ndarray) -> Windows:
    return Windows(windows.x[rows], windows.y[rows], windows.series[rows], windows.origin[rows])


def _sample(windows: Windows, most: int) -> Windows:
    """At most ``most`` of the windows, a fixed random subset (in order) when there are more."""
    if len(windows) <= most:
        return windows
    return _rows(windows, np.sort(np.random.default_rng(0).choice(len(windows), most, replace=False)))


def stopping_split(train: Windows, horizon: int) -> tuple[Windows, Windows]:
    """The training windows cut by time in each series: ``(fit, stop)``.

    The newest ``STOP_SHARE`` of each series' origins decide a network's early
    stopping; it trains on the windows whose targets end before them. So a
    network, like every linear candidate, is ranked on validation windows that
    chose none of its settings: stopping on the ranking windows themselves let
    a network "beat" the last value of a random walk.
    """
    fit, stop = [], []
    for k in np.unique(train.series):
        rows = np.flatnonzero(train.series == k)
        origins = np.sort(train.origin[rows])
        cutoff = origins[min(len(origins) - 1, int(len(origins) * (1 - STOP_SHARE)))]
        stop.append(rows[train.origin[rows] >= cutoff])
        fit.append(rows[train.origin[rows] + horizon <= cutoff])
    return _rows(train, np.concatenate(fit)), _rows(train, np.concatenate(stop))


def _positive(ds: Dataset, split: SplitConfig) -> bool:
    """Whether every target value before the test split is positive (so logarithms exist)."""
    return smallest_before_test(ds, split) > 0


def _fitted(name: str) -> bool:
    """Whether a linear candidate learned from the training windows (the ridge regressions)."""
    return _bare(name)[1].startswith("ridge[")


def _is_baseline(name: str) -> bool:
    return name == "naive" or name.startswith("seasonal_naive[")


def _family(name: str) -> str:
    space, bare = _bare(name)
    return space + " " + bare.split("[")[0].split("@")[0]


def _combination_parts(scored: list[Scored]) -> list[str]:
    """The best candidate of each of the ``COMBINE`` best families (space and method: ``log
    holt_winters`` is one). Ranked on every origin before the test split where the candidate
    learned nothing from them (the fixed bases: hundreds of origins rather than the validation
    split's two dozen, so the best of 500 settings is not merely the luckiest), else (ridge) on
    the validation windows."""
    best: dict[str, Scored] = {}
    for c in scored:
        rank = c.history if c.history is not None else c.score
        held = best.get(_family(c.name))
        if held is None or rank < (held.history if held.history is not None else held.score):
            best[_family(c.name)] = c
    ranked = sorted(best.values(), key=lambda c: c.history if c.history is not None else c.score)
    return [c.name for c in ranked[:COMBINE]]


@dataclass
class Combination:
    """The mean of linear candidates, some on the values and some on their logarithms: one linear
    base ``matrix`` and one on the logs, ``log_matrix``, mixed by ``log_share``."""

    parts: list[str]
    matrices: dict[str, np.ndarray]  # part -> matrix, in the part's space
    known: KnownEffect | None = None  # the effect of inputs known in advance on it (training.known)

    @classmethod
    def of(cls, parts: list[str], linear: dict[str, np.ndarray]) -> Combination:
        return cls(parts, {p: linear[p] for p in parts})

    @property
    def name(self) -> str:
        name = self.parts[0] if len(self.parts) == 1 else "mean(" + ", ".join(self.parts) + ")"
        return name if self.known is None else f"{name} + known inputs[{self.known.penalty:g}]"

    @property
    def matrix(self) -> np.ndarray:
        """The linear base a model carries (``base_matrix``): the mean on the values, else on the logs."""
        raw = self._mean("raw")
        found = raw if raw is not None else self._mean("log")
        assert found is not None  # a combination has parts
        return found

    def _mean(self, space: Space) -> np.ndarray | None:
        found = [m for p, m in self.matrices.items() if _bare(p)[0] == space]
        return np.mean(found, axis=0) if found else None

    @property
    def log_share(self) -> float:
        return round(sum(_bare(p)[0] == "log" for p in self.parts) / len(self.parts), 4)

    def forecast(self, x: np.ndarray, nt: int) -> np.ndarray:
        """Raw windows ``(n, time, features)`` -> ``(n, horizon, nt)`` raw (the targets come first)."""
        raw, logs = self._mean("raw"), self._mean("log")
        out: np.ndarray | float = 0.0
        if raw is not None:
            out = out + (1 - self.log_share) * bases.apply(raw, x[..., :nt])
        if logs is not None:
            out = out + self.log_share * np.exp(bases.apply(logs, np.log(x[..., :nt])))
        if self.known is not None:
            out = out + self.known.part(x, self.matrix)
        return np.asarray(out)

    def with_known(
        self, spec: ModelSpec, train: Windows, mean: np.ndarray, std: np.ndarray, penalties: Sequence[float]
    ) -> list[Combination]:
        """This combination and the effect of the known inputs on it, fitted on ``train`` with each
        ridge penalty (the base's errors and the deltas computed once for all of them)."""
        nt = len(spec.targets)
        error = (train.y - self.forecast(train.x, nt)) / known.window_scale(train.x, nt)
        d = known.deltas(train.x, spec, self.matrix, mean, std)
        return [
            Combination(self.parts, self.matrices, KnownEffect(spec, mean, std, known.fit(d, error, p), p))
            for p in penalties
        ]

    def refit(self, windows: Windows, length: int, horizon: int, lags: list[int]) -> Combination:
        """The same parts, the ridge ones fitted again on ``windows`` (raw)."""
        again: dict[str, np.ndarray] = {}
        for space in ("raw", "log"):
            if any(_bare(p)[0] == space and _fitted(p) for p in self.parts):
                prefix = "log " if space == "log" else ""
                found = linear_candidates(_in_space(windows, space), length, horizon, lags)
                again |= {prefix + n: m for n, m in found.items()}
        matrices = {p: again.get(p, m) if _fitted(p) else m for p, m in self.matrices.items()}
        refitted = Combination(self.parts, matrices)
        if self.known is None:
            return refitted
        # the known inputs' effect on the refitted base, on the same windows, with the same penalty
        k = self.known
        return refitted.with_known(k.spec, _sample(windows, known.MAX_WINDOWS), k.mean, k.std, [k.penalty])[0]

    def install(self, model: Forecaster) -> None:
        """Put the base into a model built with ``base=self.name, log_share=self.log_share``."""
        logs = self._mean("log")
        model.set_base(self.name, self.matrix, logs if self.log_share > 0 else None)
        if self.known is not None:
            with torch.no_grad():
                model.known_weight.copy_(torch.from_numpy(self.known.weight))


def halve_correction(model: Forecaster) -> None:
    """Make ``model`` the mean of the network and its base: its correction, the head's last
    linear layer, halved (exact: the head's output is linear in that layer).

    The combination argument again, between a network and its base: measured with
    ``bench/recipe_ablation.py`` (docs/accuracy.md), the full correction lost to the base
    alone on the test split of most sets where a network won validation.
    """
    model.scale_correction(NETWORK_SHARE)


def choose(
    cfg: Config, ds: Dataset, season: int, mean: np.ndarray, std: np.ndarray
) -> tuple[Choice, dict[str, Windows]]:
    """Run the recipe on a resolved config (``resolve``); returns the choice and the windows."""
    windows = make_windows(ds, cfg.split, cfg.window)
    length, horizon = cfg.window.length, cfg.window.horizon
    assert length is not None
    lags = [lag for lag in seasons(season, ds.frequency) if lag <= length]
    val = Validation(windows["val"], _scales(ds, cfg.split, season))
    earlier = calibration_windows(windows, cfg.train.seed)
    history = Validation(earlier, val.scales)
    spaces: list[Space] = ["raw"]
    if _positive(ds, cfg.split):
        spaces.append("log")  # for seasonal swings that grow with the level (airline passengers)
    linear: dict[str, np.ndarray] = {}  # candidate -> matrix, in the candidate's space
    scored: list[Scored] = []
    for space in spaces:
        prefix = "log " if space == "log" else ""
        for name, m in linear_candidates(_in_space(windows["train"], space), length, horizon, lags).items():
            name = prefix + name
            fitted = _fitted(name)  # fitted on the training windows
            past = None if fitted else history.score_base(name, m, space)
            scored.append(Scored(name, "base", val.score_base(name, m, space), past))
            linear[name] = m
    # One combination per space and one mixing both: a series whose swings grow with its level
    # wants the logarithms throughout, a series near zero the values; validation decides.
    combinations: dict[str, Combination] = {}
    for group in [[s] for s in spaces] + ([spaces] if len(spaces) > 1 else []):
        in_group = [c for c in scored if c.kind == "base" and _bare(c.name)[0] in group]
        combination = Combination.of(_combination_parts(in_group), linear)
        if combination.name in combinations:
            continue
        combinations[combination.name] = combination
        if combination.name not in linear:  # a single part is scored already, as itself
            forecast = combination.forecast(windows["val"].x, len(ds.targets))
            scored.append(Scored(combination.name, "combination", val.score(combination.name, forecast)))
    best_baseline = min((c for c in scored if _is_baseline(c.name)), key=lambda c: c.score)
    baseline = best_baseline.score
    best_linear = min((c for c in scored if c.name in combinations), key=lambda c: c.score)
    combination = combinations[best_linear.name]
    if not val.clearly_better(best_linear, best_baseline, BASELINE_MARGIN):
        best_linear = best_baseline  # a random walk's last value, not the noise that beat it by a hair
        combination = Combination.of([best_baseline.name], linear)
    if ds.known is not None:
        best_linear, combination = _with_known(ds, combination, best_linear, windows, val, mean, std, scored)
    log.info("recipe: best linear candidate %s (validation MASE %.4f)", best_linear.name, best_linear.score)

    nets: list[tuple[Scored, Forecaster, TrainResult, np.ndarray]] = []  # with its validation forecast
    fit_windows, stop_windows = stopping_split(windows["train"], horizon)
    # A panel's windows overlap heavily; a random subset trains as well in a fraction of the time
    # (148 series: 49,000 windows, minutes per epoch on 2 cores).
    sample = np.random.default_rng(cfg.train.seed)
    # A long window (a week of half-hours: 672 steps) costs as much per window as ten short ones.
    most = min(NETWORK_WINDOWS, max(NETWORK_WINDOWS // 16, NETWORK_STEPS // length))
    if len(fit_windows) > most:
        fit_windows = _rows(fit_windows, np.sort(sample.choice(len(fit_windows), most, replace=False)))
    if len(stop_windows) > most // 4:
        rows = np.sort(sample.choice(len(stop_windows), most // 4, replace=False))
        stop_windows = _rows(stop_windows, rows)
    notes: list[str] = []
    cells = NETWORK_CELLS
    if len(fit_windows) < MIN_TRAIN_WINDOWS * len(ds.series):
        cells = ()
        notes.append(f"no network candidates: {len(fit_windows)} training windows are too few to train one")
    elif length > NETWORK_MAX_LENGTH:
        cells = ()
        notes.append(
            f"no network candidates: a window of {length} steps takes tens of minutes per network "
            f"on two cores (at most {NETWORK_MAX_LENGTH}); a model section in the config trains one"
        )
    jobs: list[Job] = []
    for cell in cells:
        network = NetworkSpec(
            cell=cell, head="direct", hidden=32, base=combination.name, log_share=combination.log_share
        )
        spec = spec_for(network, ds, length, horizon)
        seed_everything(cfg.train.seed)
        model = build_model(spec, mean, std)
        combination.install(model)
        train_cfg = cfg.train.model_copy(update={"validate_initial": True})
        jobs.append(Job(model, fit_windows, stop_windows, train_cfg, finish=halve_correction))
    # The candidates are independent: on two cores they train at once (training.side_by_side).
    for cell, (model, result) in zip(cells, train_all(jobs, cfg.machine), strict=True):
        with torch.no_grad():
            pred = model(torch.from_numpy(windows["val"].x)).numpy()
        name = f"{cell} on {best_linear.name}"
        nets.append((Scored(name, "network", val.score(name, pred)), model, result, pred))
        log.info(
            "recipe: %s validation MASE %.4f (best epoch %d)", name, nets[-1][0].score, result.best_epoch
        )
    scored += [n[0] for n in nets]

    best_net = min(nets, key=lambda n: n[0].score) if nets else None
    if (
        best_net is not None
        and val.clearly_better(best_net[0], best_linear, NETWORK_MARGIN)
        and val.better_in_both_halves(best_net[0].name, best_linear.name)
    ):
        chosen, model, result, val_forecast = best_net[0].name, best_net[1], best_net[2], best_net[3]
        if NETWORK_SHARE != 1:
            share = f"{NETWORK_SHARE:g}"
            notes.append(f"the network is published averaged with its base (its correction times {share})")
    else:
        chosen = best_linear.name
        val_forecast = combination.forecast(windows["val"].x, len(ds.targets))
        # the ridge parts learn from the validation windows too; the choice stays as made
        refitted = combination.refit(_merged([windows["train"], windows["val"]]), length, horizon, lags)
        network = NetworkSpec(head="none", base=refitted.name, log_share=refitted.log_share)
        model = build_model(spec_for(network, ds, length, horizon), mean, std)
        refitted.install(model)
        result = TrainResult(best_val=best_linear.score)
        if any(_fitted(p) for p in combination.parts) or combination.known is not None:
            notes.append(
                "the ridge parts of the base (and the effect of the known inputs) were fitted again on "
                "the training and validation windows"
            )
    ranked_all = sorted(scored, key=lambda s: s.score)
    if best_net is not None and chosen == best_net[0].name:
        calibration = Calibration(earlier, _network_forecast(model, earlier.x))
    else:
        calibration = Calibration(earlier, combination.forecast(earlier.x, len(ds.targets)))
    choice = Choice(
        model.eval(),
        result,
        ranked_all,
        chosen,
        baseline,
        len(windows["val"]),
        notes,
        val_forecast,
        calibration,
    )
    return choice, windows


def _with_known(
    ds: Dataset,
    combination: Combination,
    best: Scored,
    windows: dict[str, Windows],
    val: Validation,
    mean: np.ndarray,
    std: np.ndarray,
    scored: list[Scored],
) -> tuple[Scored, Combination]:
    """The combination with the effect of the known inputs (``training.known``), each ridge
    penalty scored on validation, if one is clearly better than the combination alone."""
    horizon = windows["val"].y.shape[1]
    length = windows["val"].x.shape[1]
    # the spec only places the columns (training.known reads it); the model is built later
    spec = spec_for(NetworkSpec(head="none", base="known"), ds, length, horizon)
    train = _sample(windows["train"], known.MAX_WINDOWS)
    found: list[tuple[Scored, Combination]] = []
    for candidate in combination.with_known(spec, train, mean, std, known.PENALTIES):
        forecast = candidate.forecast(windows["val"].x, len(ds.targets))
        found.append((Scored(candidate.name, "combination", val.score(candidate.name, forecast)), candidate))
    scored += [s for s, _ in found]
    top, candidate = min(found, key=lambda f: f[0].score)
    if val.clearly_better(top, best, BASELINE_MARGIN):
        return top, candidate
    return best, combination


def calibration_windows(windows: dict[str, Windows], seed: int) -> Windows:
    """Every window before the test split, the training and the validation ones; for a big panel
    a random subset of ``HISTORY_WINDOWS``, the same one the fixed bases are ranked on.

    The interval calibration reads them all, not the validation split alone: two dozen
    overlapping validation windows span one stretch of a series and miss the turns and quiet
    spells of the rest (measured in docs/accuracy.md, "Prediction intervals").
    """
    earlier = _merged([windows["train"], windows["val"]])
    if len(earlier) > HISTORY_WINDOWS:
        rows = np.random.default_rng(seed).choice(len(earlier), HISTORY_WINDOWS, replace=False)
        earlier = _rows(earlier, np.sort(rows))
    return earlier


def _network_forecast(model: Forecaster, x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """``model``'s forecasts of windows ``x`` ``(n, length, features)``, a batch at a time (a
    recurrent layer keeps ``batch x length x hidden`` numbers per call)."""
    model.eval()
    with torch.no_grad():
        parts = [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def verdict(choice: Choice) -> str:
    """One plain sentence: what won, by how much, and whether a baseline did."""
    record = choice.record()
    if choice.baseline_won:
        return (
            f"the automatic recipe kept a baseline, {record.chosen}: no candidate beat it on the "
            f"{record.windows} validation windows (validation MASE {record.score:.4f})"
        )
    gain = 1 - record.score / record.baseline if record.baseline > 0 else 0.0
    return (
        f"the automatic recipe chose {record.chosen}: validation MASE {record.score:.4f} on "
        f"{record.windows} windows, {gain:.0%} below the better of naive and seasonal naive "
        f"({record.baseline:.4f})"
    )


def table(choice: Choice, top: int = 15) -> str:
    """The report's selection.txt: the verdict, the chosen model, then the candidates' validation
    and history scores, best first (every one of them is in the manifest's selection)."""
    lines = [verdict(choice), "", f"chosen: {choice.chosen}", ""]
    lines.append(f"{'candidate':<56} {'kind':<12} {'val MASE':>9} {'history':>9}")
    shown = [
        c
        for i, c in enumerate(choice.candidates)
        if i < top or c.name == choice.chosen or _is_baseline(c.name)
    ]
    for c in shown:
        mark = " *" if c.name == choice.chosen else ""
        name = c.name if len(c.name) <= 56 else c.name[:53] + "..."
        past = f"{c.history:9.4f}" if c.history is not None else f"{'-':>9}"
        lines.append(f"{name:<56} {c.kind:<12} {c.score:9.4f} {past}{mark}")
    if len(choice.candidates) > len(shown):
        lines.append(f"... and {len(choice.candidates) - len(shown)} more (all in the manifest's selection)")
    return "\n".join([*lines, "", *choice.notes]) + "\n"
