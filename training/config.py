"""One validated training config: a TOML file plus command-line overrides.

The resolved config is saved in every bundle's manifest, so a retraining job can
rebuild the same model from data, not from pickles.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.bundle.manifest import NAME_PATTERN


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    path: Path = Field(description="CSV or Parquet file")
    format: Literal["auto", "csv", "parquet"] = "auto"  # auto: by file extension
    layout: Literal["wide", "long"] = "wide"  # long: one row per (series_id, timestamp)
    timestamp: str = "timestamp"
    series_id: str = "series_id"  # long layout only
    # wide layout: are the target columns the features of ONE series (a trajectory's
    # x and y) or separate univariate series that share one model?
    columns: Literal["features", "series"] = "features"
    targets: list[str] = Field(default_factory=list)  # empty: every numeric non-covariate column
    covariates: list[str] = Field(default_factory=list)  # inputs only, never forecast
    frequency: str | None = None  # pandas alias ('MS', '30min'); None: inferred
    max_gap: int = Field(default=3, ge=0)  # interior NaN runs up to this many points are interpolated
    tail: int | None = Field(default=None, gt=0)  # keep only the last N points of each series
    delimiter: str = Field(
        default=",", min_length=1, max_length=1, description="CSV field separator, e.g. ';' or '\\t'"
    )
    date_format: str | None = Field(
        default=None,
        description="strftime format of the time column, e.g. '%d/%m/%Y'; "
        "None: ISO 8601 and the usual formats, read month-first unless dayfirst",
    )
    dayfirst: bool = Field(default=False, description="read ambiguous dates such as 03/04/2020 day-first")
    steps: Literal["time", "rows"] = Field(
        default="time",
        description="time: rows must be evenly spaced in time (a missing step is an error); "
        "rows: each row is the next step whatever the calendar says (trading days, business hours), "
        "timestamps need only increase; give the season in steps with evaluate.season; "
        "forecasts are not dated",
    )


class SplitConfig(_Section):
    test: int = Field(default=24, gt=0)  # points held out at the end of each series
    val: int = Field(default=24, gt=0)  # points before the test split, for early stopping


class WindowConfig(_Section):
    length: int = Field(default=36, gt=0)  # input time steps
    horizon: int = Field(default=12, gt=0)  # forecast steps
    stride: int = Field(default=1, gt=0)  # step between training windows


# Candidates for model.skip_damping = "auto": 0 is the plain seasonal naive, 1 shifts
# the next season by the last error (and each further season by it again).
SKIP_DAMPING_GRID = (0.0, 0.5, 0.8, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0)


class ModelConfig(_Section):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    head: Literal["direct", "seq2seq", "mlp"] = "direct"
    # direct head: read the forecast from the encoder outputs of the last `horizon`
    # steps ('steps', as darts' BlockRNN / neuralforecast do) or from the last
    # hidden state through one linear layer ('last').
    readout: Literal["steps", "last"] = "steps"
    hidden: int = Field(default=64, gt=0)
    layers: int = Field(default=1, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    scaling: Literal["window", "standard", "none"] = "window"
    # Seasonal skip: forecast = seasonal naive read from the input window (the value
    # `skip_lag` steps before each forecast step) + the head's output as a correction,
    # whose last layer starts at zero (so the untrained model is the seasonal naive).
    # None: off. Needs window.length >= skip_lag.
    skip_lag: int | None = Field(default=None, gt=0)
    # With skip_lag: scale the correction by a learned scalar that starts at 0 (the
    # last layer then keeps its usual random initialisation).
    skip_gate: bool = False
    # With skip_lag: carry the last seasonal error forward, damped by this factor per
    # step, i.e. the base forecast becomes the seasonal ARIMA(1,0,0)(0,1,0)[skip_lag]
    # one: y[t+h-L] + phi^h * (y[t] - y[t-L]) for h = 1..L (beyond one season the
    # recursion adds phi^(h-L), phi^(h-2L), ... too). Demand, traffic and
    # the like sit above or below last week's value for hours at a time, which the plain
    # seasonal naive ignores. "auto" picks phi from SKIP_DAMPING_GRID by the base
    # forecast's validation loss before training (0 = the plain seasonal naive is a
    # candidate). Needs window.length >= skip_lag + 1.
    skip_damping: float | Literal["auto"] | None = None

    @field_validator("skip_damping", mode="before")
    @classmethod
    def _damping_not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # pydantic would read true as 1.0: no damping at all
            raise ValueError("model.skip_damping takes a number in [0, 1] or 'auto', not a boolean")
        return v

    @field_validator("skip_damping")
    @classmethod
    def _damping_range(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and not 0.0 <= v <= 1.0:
            raise ValueError("model.skip_damping must lie in [0, 1] or be 'auto'")
        return v

    @model_validator(mode="after")
    def _skip_options(self) -> ModelConfig:
        if self.skip_gate and self.skip_lag is None:
            raise ValueError("model.skip_gate needs model.skip_lag (it gates the seasonal skip's correction)")
        if self.skip_damping is not None and self.skip_lag is None:
            raise ValueError("model.skip_damping needs model.skip_lag (it damps the seasonal skip's error)")
        if self.skip_lag is not None and self.head == "seq2seq":
            # The decoder feeds its own outputs back in; with a skip those would be
            # corrections, not forecasts.
            raise ValueError("model.skip_lag works with the direct and mlp heads, not seq2seq")
        return self


class TrainConfig(_Section):
    epochs: int = Field(default=200, gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    loss: Literal["mse", "mae", "huber"] = "mae"
    patience: int = Field(default=20, gt=0)  # epochs without val improvement before stopping
    lr_patience: int = Field(default=6, gt=0)  # ReduceLROnPlateau
    lr_factor: float = Field(default=0.5, gt=0, lt=1)
    clip_norm: float | None = Field(default=1.0, ge=0)  # 0 (or None): no gradient clipping
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True  # tqdm bar; one log line per epoch either way
    threads: int | None = Field(default=None, gt=0)  # torch intra-op threads; None: torch default
    # Seed ensemble: train this many members with seeds seed*K ... seed*K+K-1 (each with
    # its own early stopping); the model averages their forecasts. Training and serving
    # cost K times as much.
    ensemble: int = Field(default=1, ge=1)
    # Score the validation loss of the initial weights as "epoch 0", so early stopping
    # can keep them if no epoch improves on them (useful with model.skip_lag).
    validate_initial: bool = False


class EvaluateConfig(_Section):
    season: int | None = Field(default=None, gt=0)  # None: from the frequency (MS -> 12 ...)


class ExportConfig(_Section):
    name: str = Field(default="demo", pattern=NAME_PATTERN)
    model_dir: Path = Path("models")
    # torchscript emits native ONNX LSTM/GRU/RNN ops with a dynamic time axis;
    # torch.export ('dynamo') unrolls the recurrence and freezes the time axis.
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    opset: int = Field(default=17, ge=14)
    tolerance: float = Field(default=1e-4, gt=0)  # parity: max |onnx - torch| <= tol * data scale
    make_current: bool = True


class RetrainConfig(_Section):
    metric: Literal["mase", "mae", "rmse", "smape"] = "mase"  # lower is better for all four
    # The challenger is promoted only if challenger < champion x (1 - margin).
    margin: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Which model/window/train config the challenger uses: the champion's saved
    # one (keep the recipe, refresh the data) or this job's (roll out a new recipe,
    # which must still beat the champion).
    config_from: Literal["champion", "job"] = "champion"


class Config(_Section):
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.model.head == "direct" and self.model.readout == "steps":
            if self.window.length < self.window.horizon:
                raise ValueError(
                    "window.length must be >= window.horizon for the direct head with "
                    "readout='steps' (it reads one encoder output per forecast step)"
                )
        if self.model.skip_lag is not None and self.window.length < self.model.skip_lag:
            raise ValueError(
                f"model.skip_lag={self.model.skip_lag} needs window.length >= skip_lag "
                f"(got {self.window.length}): the seasonal naive is read from the input window"
            )
        if self.model.skip_lag is not None and self.model.skip_damping is not None:
            if self.window.length <= self.model.skip_lag:
                raise ValueError(
                    f"model.skip_damping needs window.length >= skip_lag + 1 = {self.model.skip_lag + 1} "
                    f"(got {self.window.length}): the last seasonal error is read from the input window"
                )
        overlap = set(self.data.targets) & set(self.data.covariates)
        if overlap:
            raise ValueError(f"columns both target and covariate: {sorted(overlap)}")
        return self


def _parse_value(text: str) -> Any:
    """A TOML literal if it is one (``5``, ``true``, ``[1, 2]``), else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config dict (in place)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"override {item!r}: expected section.key=value, e.g. train.epochs=5")
        section, _, field = key.strip().partition(".")
        raw.setdefault(section, {})[field] = _parse_value(value.strip())
    return raw


def load_config(path: Path | None, overrides: list[str] | None = None) -> Config:
    """Read a TOML file (paths in [data] are relative to it), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        data_path = raw.get("data", {}).get("path")
        if data_path is not None and not Path(data_path).is_absolute():
            raw["data"]["path"] = str((Path(path).parent / data_path).resolve())
    apply_overrides(raw, overrides or [])
    return Config.model_validate(raw)


def config_to_dict(config: Config) -> dict[str, Any]:
    """JSON-ready dict of the resolved config (stored in the manifest)."""
    return config.model_dump(mode="json")
