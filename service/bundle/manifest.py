"""The bundle contract: ONE pydantic model for ``manifest.json``, holding a typed ``ModelSpec``.

The trainer writes it and the service reads it; both import this module, which
needs nothing but pydantic and the standard library (no torch, no flask).

A bundle is a directory ``MODEL_DIR/<name>/<version>/`` holding ``model.onnx``
and ``manifest.json``. ``model.onnx`` takes raw values
``float32[batch, time, features]`` on its input ``spec.input_name`` and returns
forecasts in the same units ``float32[batch, horizon, targets]`` on
``spec.output_name``; scaling lives inside the graph.

``NetworkSpec`` is also the ``[model]`` section of a training config, so a new
model option is written once, here, and shows up in the config, in every
manifest, in ``GET /v1/models``, ``/v2`` metadata and ``seqcast models``
without being listed anywhere else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.bundle import calendar

SCHEMA_VERSION: Literal[2] = 2
KNOWN_SCHEMA_VERSIONS = (1, 2)  # 1: before ModelSpec; read by migrating (see _from_v1)
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"

# Names and versions become directory names: keep them boring.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def valid_name(text: str) -> bool:
    """True if ``text`` is safe as a model name or version (one path segment)."""
    return bool(_NAME_RE.match(text)) and text not in {".", ".."}


class _Strict(BaseModel):
    """Frozen: a column list derived from the fields can be a ``functools.cached_property``,
    computed once per spec instead of once per request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        # pydantic copies the instance's __dict__, the cached values with it: a copy with other
        # fields computes its own
        copied = super().model_copy(update=update, deep=deep)
        if update:
            for name in _cached_names(type(self)):
                copied.__dict__.pop(name, None)
        return copied


@functools.cache
def _cached_names(cls: type) -> tuple[str, ...]:
    return tuple(n for n in dir(cls) if isinstance(getattr(cls, n, None), cached_property))


class InputWindow(_Strict):
    """How much history the graph takes on its time axis."""

    length: int = Field(gt=0, description="window the model was trained on; longer history is cut")
    min_length: int = Field(gt=0, description="shortest history the graph accepts")
    max_length: int | None = Field(
        default=None, description="longest history the graph accepts; None = any (dynamic time)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> InputWindow:
        if self.min_length > self.length:
            raise ValueError("min_length must not exceed length")
        if self.max_length is not None and self.max_length < self.length:
            raise ValueError("max_length must not be below length")
        return self


class Scores(_Strict):
    """Point-forecast errors on the test split (lower is better)."""

    mae: float
    rmse: float
    smape: float = Field(description="symmetric MAPE in percent, 0..200")
    mase: float | None = Field(default=None, description="None when the series has no scale")


class Metrics(_Strict):
    """Holdout metrics of the model beside naive baselines on the same windows."""

    split: str = Field(description="what was scored, e.g. 'test: last 24 points of each series'")
    windows: int = Field(ge=0, description="forecast windows scored")
    season: int = Field(ge=1, description="seasonal period used by MASE and seasonal naive")
    model: Scores
    naive: Scores
    seasonal_naive: Scores
    per_step: dict[str, list[float]] = Field(
        default_factory=dict, description="metric name -> one value per horizon step (model)"
    )


class DataInfo(_Strict):
    """What the model was trained on."""

    fingerprint: str = Field(description="sha256 of the training data as loaded")
    source: str = Field(description="path or URI the data came from")
    series: int = Field(ge=1)
    rows: int = Field(ge=1)
    start: str | None = None
    end: str | None = None


# Candidates for NetworkSpec.base_damping = "auto": 0 is the plain seasonal naive, 1 shifts
# the next season by the last error (and each further season by it again).
DAMPING_GRID = (0.0, 0.5, 0.8, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0)


MAX_QUANTILE_LEVELS = 8  # levels a quantile head learns at most: each adds two outputs per step


# Heads that forecast from a history shorter than their window (one-to-many, generation from a
# short context): both run a recurrent cell over whatever history they get, then feed their own
# forecasts back in, and train on contexts cut short (window.min_history).
GENERATIVE = ("shift", "seq2seq")


class NetworkSpec(_Strict):
    """The network and its base; the bundle manifest stores it as trained (spec.network)."""

    cell: Literal["rnn", "lstm", "gru"] = Field(
        default="lstm", description="recurrent cell of the direct and seq2seq heads (the mlp head has none)"
    )
    head: Literal["direct", "seq2seq", "shift", "mlp", "none"] = Field(
        default="direct",
        description="direct: many-to-one encoder, the forecast read from its outputs; seq2seq: "
        "encoder-decoder feeding each prediction back in; shift: one recurrent network trained to "
        "predict every next step of the window (the input shifted by one, a loss at each step), "
        "forecasting by feeding its own predictions back in (many-to-many; targets only, no "
        "covariates); mlp: a feed-forward baseline on the flattened window (one-to-one); none: no "
        "network, the base alone",
    )
    readout: Literal["steps", "last"] = Field(
        default="steps",
        description="direct head: read the forecast from the encoder outputs of the last horizon steps "
        "with one shared linear layer (steps, as darts' BlockRNN does) or from the last hidden state "
        "with one linear layer to horizon x targets (last)",
    )
    hidden: int = Field(default=64, gt=0, description="units per recurrent layer (per hidden layer for mlp)")
    layers: int = Field(default=1, gt=0, description="stacked recurrent layers (hidden layers for mlp)")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout between stacked layers")
    scaling: Literal["window", "standard", "none"] = Field(
        default="window",
        description="window: each input window by its own mean and std (instance norm), undone on the "
        "forecast; standard: training-split mean and std stored in the graph; none. Either way the "
        "graph takes and returns raw values",
    )
    log_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of the fitted base forecast made on the logarithms of the targets (exp of a "
        "linear forecast of the logs; the rest is a linear forecast of the values): for positive series "
        "whose seasonal swings grow with their level. A model with a log share takes only positive "
        "target values. Written by the automatic recipe with base",
    )
    base_lag: int | None = Field(
        default=None,
        gt=0,
        description="seasonal base: the forecast is the seasonal naive at this lag (read from the input "
        "window) plus the network's output as a correction that starts at zero, so the untrained model "
        "is the seasonal naive. Needs window.length >= base_lag and the direct or mlp head. None: off",
    )
    base_damping: float | Literal["auto"] | None = Field(
        default=None,
        description="with base_lag: the base also carries the last seasonal error forward, damped by "
        "this factor per step, y[t+h-L] + phi^h (y[t] - y[t-L]) (the seasonal ARIMA(1,0,0)(0,1,0)[L] "
        "forecast). A number in [0, 1], or auto: chosen from "
        f"{', '.join(f'{v:g}' for v in DAMPING_GRID)} by the base's validation loss before training. "
        "Needs window.length >= base_lag + 1",
    )
    base: str | None = Field(
        default=None,
        description="a linear base chosen by the automatic recipe, by name (its matrix is part of the "
        "model's weights); written by training, not by hand",
    )
    correction_gate: bool = Field(
        default=False,
        description="with base_lag: scale the correction by a learned scalar that starts at 0 (the last "
        "layer then keeps its usual random initialisation)",
    )
    frame: Literal["fixed", "heading"] = Field(
        default="fixed",
        description="fixed: the targets as given; heading: the two targets are positions (x, y) and the "
        "network sees each window turned about its last position so that the last step's displacement "
        "points along x (along-track and cross-track, one scale for both), its forecast turned back: "
        "the same manoeuvre reads the same whatever the direction of travel. Exactly two targets",
    )
    quantiles: list[float] = Field(
        default_factory=list,
        max_length=MAX_QUANTILE_LEVELS,
        description="prediction-interval levels in percent the network learns, e.g. [80, 95]: the head "
        "also forecasts each level's lower and upper bound, trained with the pinball loss, and the "
        "service serves exactly these levels from the graph. Empty: split-conformal intervals "
        "calibrated after training (any level). Direct and mlp heads",
    )

    @model_validator(mode="before")
    @classmethod
    def _damping_not_bool(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("base_damping"), bool):
            # pydantic would read true as 1.0: no damping at all
            raise ValueError("base_damping takes a number in [0, 1] or 'auto', not a boolean")
        return data

    @model_validator(mode="after")
    def _base_options(self) -> NetworkSpec:
        damping = self.base_damping
        if isinstance(damping, float) and not 0.0 <= damping <= 1.0:
            raise ValueError("base_damping must lie in [0, 1] or be 'auto'")
        if self.correction_gate and self.base_lag is None:
            raise ValueError("correction_gate needs base_lag (it gates the correction to the seasonal base)")
        if damping is not None and self.base_lag is None:
            raise ValueError("base_damping needs base_lag (it damps the seasonal base's last error)")
        if self.log_share > 0 and self.base is None:
            raise ValueError("log_share belongs to a fitted base (base), written by the automatic recipe")
        if self.base is not None and self.base_lag is not None:
            raise ValueError("give base_lag (a seasonal base) or base (a fitted one), not both")
        if self.head == "none" and self.base is None and self.base_lag is None:
            raise ValueError("head 'none' forecasts with the base alone: it needs base_lag")
        if self.correction_gate and self.head == "none":
            raise ValueError("correction_gate needs a network to gate: head 'none' has none")
        levels = self.quantiles
        if levels and (any(not 0 < v < 100 for v in levels) or levels != sorted(set(levels))):
            raise ValueError("quantiles must be levels in (0, 100), increasing, each once")
        if levels and self.head not in ("direct", "mlp"):
            raise ValueError("quantiles need the direct or mlp head (seq2seq feeds its point forecast back)")
        if self.frame == "heading" and self.scaling == "standard":
            raise ValueError(
                "frame 'heading' needs scaling 'window' or 'none': fixed statistics of the "
                "coordinates mean nothing in a frame that turns with each window"
            )
        if self.frame == "heading" and (levels or self.log_share > 0):
            # bounds and logarithms are per coordinate: a turned frame mixes the coordinates
            raise ValueError(
                "frame 'heading' works with point forecasts on the values: no quantiles or log_share"
            )
        if (self.base_lag is not None or self.base is not None) and self.head in ("seq2seq", "shift"):
            # The decoder feeds its own outputs back in; with a base those would be
            # corrections, not forecasts.
            raise ValueError(f"a base works with the direct and mlp heads (or none), not {self.head}")
        return self

    def check_window(self, length: int, horizon: int) -> None:
        """ValueError unless an input window of ``length`` steps suits this network and ``horizon``."""
        if self.head == "direct" and self.readout == "steps" and length < horizon:
            raise ValueError(
                f"window.length ({length}) must be >= window.horizon ({horizon}) for the direct head with "
                "readout 'steps' (it reads one encoder output per forecast step)"
            )
        if self.base_lag is not None and length < self.base_lag:
            raise ValueError(
                f"base_lag {self.base_lag} needs window.length >= {self.base_lag} (got {length}): "
                "the seasonal naive is read from the input window"
            )
        if self.base_lag is not None and self.base_damping is not None and length <= self.base_lag:
            raise ValueError(
                f"base_damping needs window.length >= base_lag + 1 = {self.base_lag + 1} (got {length}): "
                "the last seasonal error is read from the input window"
            )


class Known(_Strict):
    """Inputs known in advance (``data.future``, ``data.calendar``). The graph's input rows hold,
    after the history's own columns (``ModelSpec.sent``), the calendar of the row's step, then
    every known input ``horizon`` steps ahead (``ModelSpec.lead``), so the last ``horizon`` rows
    carry their values for the forecast steps."""

    future: list[str] = Field(
        default_factory=list,
        description="columns the client sends for the history (in values rows) and for every forecast "
        "step (in future): a planned promotion, a workday flag, a temperature forecast",
    )
    calendar: list[str] = Field(
        default_factory=list,
        description="calendar features of the forecast steps, computed from the request's dates: "
        f"{', '.join(calendar.FEATURES)} (sine and cosine of each periodic one)",
    )
    holidays: str | None = Field(
        default=None, description="country (or country-region, AU-VIC) of the holiday feature"
    )

    @model_validator(mode="after")
    def _known_features(self) -> Known:
        unknown = sorted(set(self.calendar) - set(calendar.FEATURES))
        if unknown:
            raise ValueError(f"unknown calendar features {unknown}: choose from {list(calendar.FEATURES)}")
        if len(set(self.calendar)) != len(self.calendar) or len(set(self.future)) != len(self.future):
            raise ValueError("a known input is named twice")
        if ("holiday" in self.calendar) != (self.holidays is not None):
            raise ValueError("the holiday feature and a holidays country go together")
        return self

    @cached_property
    def columns(self) -> list[str]:
        """The known inputs' columns: the future columns, then the calendar's."""
        return self.future + calendar.columns(self.calendar)

    def ahead(self, horizon: int) -> list[str]:
        """The graph's names of ``columns`` read ``horizon`` steps ahead: ``WorkDay+14``."""
        return [f"{c}+{horizon}" for c in self.columns]


class ModelSpec(_Strict):
    """Everything that describes the model in a bundle; the torch model carries it as ``.spec``."""

    network: NetworkSpec
    ensemble: int = Field(default=1, ge=1, description="networks whose forecasts the graph averages")
    input_window: InputWindow
    horizon: int = Field(gt=0, description="forecast steps")
    features: list[str] = Field(min_length=1, description="input columns, targets first")
    targets: list[str] = Field(min_length=1, description="forecast columns")
    frequency: str | None = Field(default=None, description="pandas offset alias, e.g. 'MS'")
    known: Known | None = Field(
        default=None,
        description="inputs known in advance; their columns close features, each read horizon steps "
        "ahead and named '<column>+<horizon>'",
    )
    input_name: str = "x"
    output_name: str = "y"

    @property
    def bounds_name(self) -> str | None:
        """The graph's second output, ``(2, levels, batch, horizon, targets)``: the lower and upper
        bounds a quantile head learned (``network.quantiles``); None for other models."""
        return f"{self.output_name}_bounds" if self.network.quantiles else None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.features[: len(self.targets)] != self.targets:
            raise ValueError("features must start with the targets, in the same order")
        self.network.check_window(self.input_window.length, self.horizon)
        if self.network.frame == "heading" and (len(self.targets) != 2 or self.input_window.min_length < 2):
            raise ValueError(
                "frame 'heading' turns positions (x, y): it needs exactly two targets (got "
                f"{len(self.targets)}) and a history of at least 2 steps (the last displacement)"
            )
        if self.known is not None:
            self._check_known(self.known)
        if self.network.head == "shift" and self.covariates:
            raise ValueError(
                "the shift head feeds its forecasts back in as the next input and forecasts no "
                f"covariates ({', '.join(self.covariates)}): train it on targets only, or use the direct head"
            )
        if self.input_window.min_length < self.input_window.length and self.network.head not in GENERATIVE:
            raise ValueError(
                f"a history shorter than the window ({self.input_window.min_length} < "
                f"{self.input_window.length}) needs a head that generates: {' or '.join(GENERATIVE)}"
            )
        return self

    def _check_known(self, known: Known) -> None:
        lead = self.lead
        if not lead:
            raise ValueError("known names no future column and no calendar feature")
        now = calendar.columns(known.calendar)
        if self.features[-len(lead) - len(now) :] != now + lead:
            raise ValueError(
                f"features must end with the calendar and the known inputs read ahead: {now + lead}"
            )
        if known.future and self.sent[-len(known.future) :] != known.future:
            raise ValueError(
                f"the history's columns {self.sent} must end with the future ones {known.future}"
            )
        if self.network.head not in ("direct", "mlp", "none"):
            raise ValueError(f"inputs known in advance need the direct or mlp head, not {self.network.head}")
        if self.input_window.min_length < self.input_window.length:
            raise ValueError("inputs known in advance need the whole window (no min_history)")
        if self.input_window.length < self.horizon:
            raise ValueError(
                f"inputs known in advance need window.length >= window.horizon ({self.horizon}): the last "
                "horizon rows of the window carry the forecast steps' values"
            )
        if known.calendar and self.frequency is None:
            raise ValueError("calendar features need a known frequency (dated data)")

    @cached_property
    def lead(self) -> list[str]:
        """The graph's columns of inputs known in advance, each ``horizon`` steps ahead of its row."""
        return [] if self.known is None else self.known.ahead(self.horizon)

    @cached_property
    def sent(self) -> list[str]:
        """The columns of the history a client sends (``/v1`` values rows): the features but the
        calendar and the known inputs read ahead, which the service builds from ``future`` and
        the dates."""
        built = len(self.lead) + (0 if self.known is None else len(calendar.columns(self.known.calendar)))
        return self.features[: len(self.features) - built]

    @cached_property
    def covariates(self) -> list[str]:
        """Input-only columns of the history (the sent columns after the targets)."""
        return self.sent[len(self.targets) :]

    @property
    def causal(self) -> bool:
        """Whether forecast step ``h`` reads known inputs of steps up to ``h`` only (the direct head's
        encoder read per step), so a request for fewer steps may send fewer future values."""
        head = self.network.head
        return head == "none" or (head == "direct" and self.network.readout == "steps")

    def summary(self) -> str:
        """One line: the network's options that differ from the defaults, then the shapes."""
        options = self.network.model_dump(exclude_defaults=True)
        head = self.network.head
        parts = [head if head in ("mlp", "none") else f"{self.network.cell}/{head}"]
        for k, v in options.items():
            if k in ("cell", "head"):
                continue
            if k == "base" and len(str(v)) > 40:  # a combination: its size, not its seven names
                v = f"mean of {_top_level_parts(str(v))}"
            parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
        if self.ensemble > 1:
            parts.append(f"ensemble={self.ensemble}")
        return " ".join(parts) + f"  window {self.input_window.length} horizon {self.horizon}"


def _top_level_parts(name: str) -> int:
    """How many candidates ``mean(a[1, 2], b, ...)`` averages (commas outside the brackets)."""
    depth, parts = 0, 1
    for char in name:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 1:
            parts += 1
    return parts


class CandidateScore(_Strict):
    name: str
    kind: Literal["base", "combination", "network"]
    score: float = Field(
        description="validation MASE: mean absolute error over the validation windows, scaled per series"
    )
    history: float | None = Field(
        default=None,
        description="MASE over every origin before the test split (training and validation windows), "
        "for the fixed bases that learn nothing from them; None for fitted candidates",
    )


class Selection(_Strict):
    """How the automatic recipe chose the model: every candidate's validation score."""

    windows: int = Field(ge=1, description="validation windows scored (every origin of the validation split)")
    chosen: str
    score: float = Field(description="the chosen candidate's validation MASE")
    baseline: float = Field(description="the better of naive and seasonal naive on the same windows")
    candidates: list[CandidateScore] = Field(description="best first")
    notes: list[str] = Field(default_factory=list)


class Intervals(_Strict):
    """Split-conformal prediction intervals, calibrated on the model's forecasts of every window
    before the test split (a hand-written model: the validation windows;
    ``service.bundle.intervals``: how they are made and served).

    The interval at level L of a forecast ``mean`` from input window ``x`` is
    ``mean ± width(L) × spread(x)``, where ``spread`` is the mean absolute
    one-step change of each target over the window (a series ten times larger
    gets a range ten times wider) and ``width(L)``, per horizon step and
    target, comes from the conformal quantile of the calibration windows'
    absolute errors in units of their own spread (normalised per step and
    pooled over the steps); between the grid's levels, linear.

    A quantile head (``method`` "quantile", ``network.quantiles``) learned its bounds: the graph's
    second output holds them, ``levels`` lists exactly the levels served and ``widths`` is empty.
    """

    method: Literal["split-conformal", "quantile"] = Field(
        default="split-conformal",
        description="split-conformal: widths calibrated on past windows, any level up to max_level; "
        "quantile: the bounds the network learned (network.quantiles), read from the graph, "
        "exactly those levels",
    )
    scale: Literal["mean-abs-change", "model"] = Field(
        default="mean-abs-change", description="what a width is in units of; model: none, the graph's"
    )
    windows: int = Field(ge=1, description="calibration windows: every origin before the test split")
    errors: int = Field(ge=1, description="scaled errors pooled per target: windows x horizon steps")
    levels: list[float] = Field(
        min_length=1, description="the grid, in percent, increasing; its last is the highest level served"
    )
    widths: list[list[list[float]]] = Field(
        default_factory=list,
        description="[level][step][target]: half-widths in units of the window's spread; empty for a "
        "quantile head",
    )
    positive: bool = Field(
        default=False, description="lower bounds are clipped at 0 (every training value was positive)"
    )
    series: dict[str, list[float]] = Field(
        default_factory=dict,
        description="a panel's own widths: series id -> its factor per target (its mean scaled error "
        "over the pooled one, shrunk towards 1); a requested series with that id gets series_widths "
        "times its factor, any other the pooled widths. Empty for one series",
    )
    series_widths: list[list[list[float]]] = Field(
        default_factory=list,
        description="[level][step][target]: half-widths in units of the window's spread times the "
        "series' factor; empty without series",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Intervals:
        increasing = all(a < b for a, b in zip(self.levels, self.levels[1:], strict=False))
        if not increasing or not 0 < self.levels[0] or not self.levels[-1] < 100:
            raise ValueError("levels must increase strictly within (0, 100)")
        if (self.method == "quantile") != (self.scale == "model"):
            raise ValueError(
                "a quantile head's bounds have scale 'model'; conformal widths 'mean-abs-change'"
            )
        if self.method == "quantile":
            if self.widths:
                raise ValueError("a quantile head's bounds come from the graph: widths must be empty")
            return self
        if len(self.widths) != len(self.levels):
            raise ValueError(f"widths has {len(self.widths)} levels, levels {len(self.levels)}")
        shapes = {(len(w), *{len(row) for row in w}) for w in self.widths}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError("widths must be [level][step][target], every level the same shape")
        flat = [v for w in (*self.widths, *self.series_widths) for row in w for v in row]
        if not all(v >= 0 and v != float("inf") for v in flat):  # NaN fails v >= 0
            raise ValueError("widths must be finite and non-negative")
        if bool(self.series) != bool(self.series_widths):
            raise ValueError("series and series_widths go together")
        if self.series_widths:
            shapes = {(len(w), *{len(row) for row in w}) for w in self.series_widths}
            if len(self.series_widths) != len(self.widths) or shapes != {self.shape}:
                raise ValueError("series_widths must have the shape of widths")
            factors = [v for f in self.series.values() for v in f]
            if any(len(f) != self.shape[1] for f in self.series.values()) or not all(
                0 < v < float("inf") for v in factors
            ):
                raise ValueError("each series' factors must be one finite positive number per target")
        return self

    @property
    def max_level(self) -> float:
        return self.levels[-1]

    @cached_property
    def table(self) -> tuple[Any, Any]:
        """(grid, widths) as numpy arrays, level 0 with zero width first: built once per bundle,
        not per request (converting the nested lists costs more than the rest of a forecast)."""
        return self._with_level_zero(self.widths)

    @cached_property
    def series_table(self) -> tuple[Any, Any]:
        """``table`` for ``series_widths`` (only read for a calibration with series)."""
        return self._with_level_zero(self.series_widths)

    def _with_level_zero(self, widths: list[list[list[float]]]) -> tuple[Any, Any]:
        """(grid, widths): level 0 with zero width first, then the calibrated levels."""
        import numpy as np  # the service and the trainer have it; this module needs only pydantic

        grid = np.asarray([0.0, *self.levels])
        table = np.zeros((1 + len(widths), *self.shape))
        if widths:
            table[1:] = np.asarray(widths, dtype=np.float64)
        return grid, table

    @cached_property
    def factors(self) -> dict[str, Any]:
        """series id -> float64 ``(targets,)``: ``series`` as arrays, built once per bundle."""
        import numpy as np

        return {key: np.asarray(f, dtype=np.float64) for key, f in self.series.items()}

    @cached_property
    def cache(self) -> dict[tuple[Any, ...], Any]:
        """(levels, known series) -> their interpolated widths, filled by
        ``service.bundle.intervals.widths`` (bounded there)."""
        return {}

    @property
    def shape(self) -> tuple[int, int]:
        """(horizon, targets) of each level's widths."""
        return len(self.widths[0]), len(self.widths[0][0])


class Manifest(_Strict):
    """``manifest.json`` of one immutable bundle version."""

    schema_version: Literal[2] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    created: datetime
    spec: ModelSpec
    metrics: Metrics | None = None
    selection: Selection | None = Field(
        default=None, description="how the automatic recipe chose the model (absent for a hand-written one)"
    )
    intervals: Intervals | None = Field(
        default=None, description="the interval calibration (absent: the model serves no intervals)"
    )
    training_config: dict[str, Any] = Field(description="the resolved training config")
    data: DataInfo
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int | None = None
    framework: dict[str, str] = Field(default_factory=dict, description="library versions")

    @model_validator(mode="after")
    def _resolved(self) -> Manifest:
        # A model in training may hold "auto" until fit chooses; a bundle holds what was chosen.
        if self.spec.network.base_damping == "auto":
            raise ValueError("spec.network.base_damping 'auto' must be resolved to a number")
        learned = self.spec.network.quantiles
        if learned and (self.intervals is None or self.intervals.method != "quantile"):
            raise ValueError(
                "a model with network.quantiles serves them: intervals.method must be 'quantile'"
            )
        if self.intervals is not None and self.intervals.method == "quantile":
            if self.intervals.levels != learned:
                levels = self.intervals.levels
                raise ValueError(
                    f"intervals.levels {levels} must be the levels the network learned, {learned}"
                )
        elif self.intervals is not None and self.intervals.shape != (
            self.spec.horizon,
            len(self.spec.targets),
        ):
            raise ValueError(
                f"intervals.widths are {list(self.intervals.shape)} per level, the model forecasts "
                f"[{self.spec.horizon}, {len(self.spec.targets)}] (horizon, targets)"
            )
        return self

    @classmethod
    def from_stored(cls, raw: Any) -> Manifest:
        """Validate a parsed ``manifest.json`` of any known schema version.

        Forward compatible within a schema version: top-level fields this code
        does not know (a newer trainer's additions, which by the contract only
        describe the bundle) are dropped. A field that changes how a bundle must
        be served comes with a new ``schema_version``, which this code refuses.
        Version 1 (before ``ModelSpec``) is migrated, so an upgraded service
        still serves the bundles it served before.
        """
        if isinstance(raw, dict):
            version = raw.get("schema_version", 1)
            if version == 1:
                raw = _from_v1(raw)
            if raw.get("schema_version") == SCHEMA_VERSION:
                raw = {k: v for k, v in raw.items() if k in cls.model_fields}
        return cls.model_validate(raw)


def _from_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 manifest (model fields at the top level) as schema 2; unknown shapes pass
    through to fail validation with pydantic's message."""
    trained = raw.get("training_config")
    model = trained.get("model") if isinstance(trained, dict) else None
    model = model if isinstance(model, dict) else {}
    cell = raw.get("cell")
    network = {
        "cell": model.get("cell", "lstm") if cell == "none" else cell,
        "head": raw.get("head"),
        "scaling": raw.get("scaling"),
        "base_lag": raw.get("skip_lag"),
        "base_damping": raw.get("skip_damping"),
        "correction_gate": bool(model.get("skip_gate", False)),
    }
    network.update({k: model[k] for k in ("readout", "hidden", "layers", "dropout") if k in model})
    spec_keys = ("input_window", "horizon", "features", "targets", "frequency", "input_name", "output_name")
    spec = {k: raw[k] for k in spec_keys if k in raw}
    spec.update(network=network, ensemble=raw.get("ensemble", 1))
    moved = {"cell", "head", "scaling", "skip_lag", "skip_damping", "ensemble", *spec_keys}
    rest = {k: v for k, v in raw.items() if k not in moved and k != "schema_version"}
    return {**rest, "schema_version": SCHEMA_VERSION, "spec": spec}
