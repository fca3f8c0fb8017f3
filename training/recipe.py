"""The automatic recipe: a config that names only the data and the horizon gets a model chosen
on rolling-origin validation.

Candidates, all scored on the same validation windows (every origin of the
validation split, several horizons' worth before the test split) by their
mean absolute error scaled per series (MASE on the validation windows):

1. the simple forecasts as linear bases (``training.bases``): naive, drift,
   seasonal naive, damped seasonal, exponential smoothing, Theta (plain and
   on the deseasonalised window), and ridge regressions on the window fitted
   to the training windows;
2. combinations: the mean of the best few bases (one per family), which is
   still one linear base;
3. recurrent networks (LSTM, GRU) trained as corrections on top of the best
   linear candidate, as ES-RNN did: the base removes level and season, the
   network learns what remains. Training starts at the base ("epoch 0"), so a
   network that cannot improve on it ends as the base.

The winner has the lowest validation score; a network must beat the best
linear candidate by ``NETWORK_MARGIN`` too, because its early stopping has
already looked at the same windows. Naive and seasonal naive are always
candidates, so the model chosen never scores worse on validation than the
better of them. A linear winner is refitted on the training and validation
windows before export (its choice is kept); everything is one ONNX graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from service.bundle.manifest import CandidateScore, NetworkSpec, Selection
from training import bases
from training.config import Config, SplitConfig, WindowConfig
from training.data import DataError, Dataset
from training.models import Forecaster, build_model, model_spec
from training.train import TrainResult, fit, seed_everything
from training.windows import Windows, bounds, make_windows

log = logging.getLogger("seqcast.recipe")

RIDGE_PENALTIES = (0.1, 1.0, 10.0)
COMBINE = (2, 3, 4)  # combination sizes tried, best-of-family first
NETWORK_CELLS: tuple[Literal["gru", "lstm"], ...] = ("gru", "lstm")
NETWORK_MARGIN = 0.02  # a network must beat the best linear candidate by 2 % on validation
MIN_TRAIN_WINDOWS = 8  # per series, below which the window or the validation is shortened


@dataclass
class Scored:
    name: str
    kind: Literal["base", "combination", "network"]
    score: float  # validation MASE


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

    @property
    def baseline_won(self) -> bool:
        """Whether the chosen model is the naive or the seasonal naive forecast itself."""
        return self.chosen == "naive" or self.chosen.startswith("seasonal_naive[")

    def record(self) -> Selection:
        """The manifest's account of the choice."""
        best = next(c for c in self.candidates if c.name == self.chosen)
        return Selection(
            windows=self.windows,
            chosen=self.chosen,
            score=best.score,
            baseline=self.baseline,
            candidates=[CandidateScore(name=c.name, kind=c.kind, score=c.score) for c in self.candidates],
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
    horizon, as in the M4 protocol), the validation split (two horizons: horizon + 1 origins)
    and the window (two seasons or two horizons), shortened for short series."""
    h = cfg.window.horizon
    test = cfg.split.test or h
    n = min(len(s.values) for s in ds.series)
    lags = seasons(season, ds.frequency)
    longest = max(lags, default=1)
    length = cfg.window.length or max(2 * longest, 2 * h, 8)
    val = cfg.split.val or 2 * h

    def room(length: int, val: int) -> int:  # training windows per series of the shortest
        return n - test - val - length - h + 1

    if cfg.window.length is None:
        for shorter in (max(longest + 1, 2 * h, 8), max(longest + 1, h, 4), max(h, 4)):
            if room(length, val) >= MIN_TRAIN_WINDOWS:
                break
            length = min(length, shorter)
    if cfg.split.val is None and room(length, val) < MIN_TRAIN_WINDOWS:
        val = h
    if room(length, val) < 1:
        raise DataError(
            f"the shortest series has {n} points: too short for horizon {h} with a test split of {test}, "
            f"validation {val} and a window of {length}; shorten window.horizon or give longer series"
        )
    return cfg.model_copy(
        update={
            "split": SplitConfig(test=test, val=val),
            "window": WindowConfig(length=length, horizon=h, stride=cfg.window.stride),
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
    """Scores forecasts of the validation windows: mean absolute error scaled per series."""

    def __init__(self, windows: Windows, scales: np.ndarray) -> None:
        self.windows = windows
        self.scale = scales[windows.series][:, None, :]  # (n, 1, targets)

    def score(self, pred: np.ndarray) -> float:
        """``pred``: ``(n, horizon, targets)`` raw."""
        return float(np.mean(np.abs(pred - self.windows.y) / self.scale))

    def score_base(self, matrix: np.ndarray) -> float:
        nt = self.windows.y.shape[2]
        return self.score(bases.apply(matrix, self.windows.x[..., :nt]))


def _flat(windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Every target of every window as a univariate window: ``(n * targets, length)``, ``(.., horizon)``."""
    nt = windows.y.shape[2]
    x = np.moveaxis(windows.x[..., :nt], 2, 1).reshape(-1, windows.x.shape[1]).astype(np.float64)
    y = np.moveaxis(windows.y, 2, 1).reshape(-1, windows.y.shape[1]).astype(np.float64)
    return x, y


def linear_candidates(train: Windows, length: int, horizon: int, lags: list[int]) -> dict[str, np.ndarray]:
    """Name -> matrix of every fixed base and every ridge fit on ``train``."""
    found = {}
    for lag in lags or [1]:
        for b in bases.fixed(length, horizon, lag if lag > 1 else 1):
            found[b.name] = b.matrix
    x, y = _flat(train)
    for penalty in RIDGE_PENALTIES:
        found[f"ridge[{penalty:g}]"] = bases.ridge(x, y, penalty)
    return found


def refit(name: str, parts: list[str], windows: list[Windows], length: int, horizon: int,
          lags: list[int]) -> np.ndarray:  # fmt: skip
    """The matrix of a linear candidate, its ridge members fitted again on ``windows`` together."""
    merged = Windows(
        x=np.concatenate([w.x for w in windows]),
        y=np.concatenate([w.y for w in windows]),
        series=np.concatenate([w.series for w in windows]),
        origin=np.concatenate([w.origin for w in windows]),
    )
    every = linear_candidates(merged, length, horizon, lags)
    return np.mean([every[p] for p in parts], axis=0)


def _family(name: str) -> str:
    return name.split("[")[0]


def choose(
    cfg: Config, ds: Dataset, season: int, mean: np.ndarray, std: np.ndarray
) -> tuple[Choice, dict[str, Windows]]:
    """Run the recipe on a resolved config (``resolve``); returns the choice and the windows."""
    windows = make_windows(ds, cfg.split, cfg.window)
    length, horizon = cfg.window.length, cfg.window.horizon
    assert length is not None
    lags = [lag for lag in seasons(season, ds.frequency) if lag <= length]
    val = Validation(windows["val"], _scales(ds, cfg.split, season))
    linear = linear_candidates(windows["train"], length, horizon, lags)
    scored = [Scored(name, "base", val.score_base(m)) for name, m in linear.items()]
    members: dict[str, list[str]] = {name: [name] for name in linear}
    best_of_family: dict[str, Scored] = {}
    for s in sorted(scored, key=lambda s: s.score):
        best_of_family.setdefault(_family(s.name), s)
    ranked = sorted(best_of_family.values(), key=lambda s: s.score)
    for k in COMBINE:
        if len(ranked) >= k:
            parts = [s.name for s in ranked[:k]]
            name = "mean(" + ", ".join(parts) + ")"
            linear[name] = np.mean([linear[p] for p in parts], axis=0)
            members[name] = parts
            scored.append(Scored(name, "combination", val.score_base(linear[name])))
    best_linear = min(scored, key=lambda s: s.score)
    baselines = [s.score for s in scored if s.name == "naive" or s.name.startswith("seasonal_naive[")]
    baseline = min(baselines)
    log.info("recipe: best linear candidate %s (validation MASE %.4f)", best_linear.name, best_linear.score)

    nets: list[tuple[Scored, Forecaster, TrainResult]] = []
    cell: Literal["rnn", "lstm", "gru"]
    for cell in NETWORK_CELLS:
        network = NetworkSpec(cell=cell, head="direct", hidden=32, base=best_linear.name)
        spec = model_spec(network, ds.features, ds.targets, length, horizon, ds.frequency)
        seed_everything(cfg.train.seed)
        model = build_model(spec, mean, std)
        model.set_base(best_linear.name, linear[best_linear.name])
        train_cfg = cfg.train.model_copy(update={"validate_initial": True})
        result = fit(model, windows["train"], windows["val"], train_cfg, cfg.machine)
        with torch.no_grad():
            pred = model(torch.from_numpy(windows["val"].x)).numpy()
        name = f"{cell} on {best_linear.name}"
        nets.append((Scored(name, "network", val.score(pred)), model, result))
        log.info(
            "recipe: %s validation MASE %.4f (best epoch %d)", name, nets[-1][0].score, result.best_epoch
        )
    scored += [n[0] for n in nets]

    best_net = min(nets, key=lambda n: n[0].score) if nets else None
    notes = []
    if best_net is not None and best_net[0].score < best_linear.score * (1 - NETWORK_MARGIN):
        chosen, model, result = best_net[0].name, best_net[1], best_net[2]
    else:
        chosen = best_linear.name
        matrix = refit(chosen, members[chosen], [windows["train"], windows["val"]], length, horizon, lags)
        network = NetworkSpec(head="none", base=chosen)
        model = build_model(
            model_spec(network, ds.features, ds.targets, length, horizon, ds.frequency), mean, std
        )
        model.set_base(chosen, matrix)
        result = TrainResult(best_val=best_linear.score)
        if any(p.startswith("ridge[") for p in members[chosen]):
            notes.append("the ridge part of the base was fitted again on the training and validation windows")
    ranked_all = sorted(scored, key=lambda s: s.score)
    choice = Choice(model.eval(), result, ranked_all, chosen, baseline, len(windows["val"]), notes)
    return choice, windows


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
    """The candidates' validation scores, best first (the report's selection.txt)."""
    lines = [verdict(choice), "", f"{'candidate':<60} {'kind':<12} {'val MASE':>9}"]
    for c in choice.candidates[:top]:
        mark = " *" if c.name == choice.chosen else ""
        lines.append(f"{c.name:<60} {c.kind:<12} {c.score:9.4f}{mark}")
    if len(choice.candidates) > top:
        lines.append(f"... and {len(choice.candidates) - top} more (all in the manifest's selection)")
    return "\n".join([*lines, *choice.notes]) + "\n"
