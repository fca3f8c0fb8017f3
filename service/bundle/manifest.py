"""The bundle contract: ONE pydantic model for ``manifest.json``.

The trainer writes it and the service reads it; both import this module, which
needs nothing but pydantic and the standard library (no torch, no flask).

A bundle is a directory ``MODEL_DIR/<name>/<version>/`` holding ``model.onnx``
and ``manifest.json``. ``model.onnx`` takes raw values
``float32[batch, time, features]`` on its input ``manifest.input_name`` and returns
forecasts in the same units ``float32[batch, horizon, targets]`` on
``manifest.output_name``; scaling lives inside the graph.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Literal[1] = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"

# Names and versions become directory names: keep them boring.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def valid_name(text: str) -> bool:
    """True if ``text`` is safe as a model name or version (one path segment)."""
    return bool(_NAME_RE.match(text)) and text not in {".", ".."}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Manifest(_Strict):
    """``manifest.json`` of one immutable bundle version."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    created: datetime
    cell: Literal["rnn", "lstm", "gru", "none"] = Field(description="'none' for the mlp head")
    head: Literal["direct", "seq2seq", "mlp"]
    input_name: str = "x"
    output_name: str = "y"
    input_window: InputWindow
    features: list[str] = Field(min_length=1, description="input columns, targets first")
    targets: list[str] = Field(min_length=1, description="forecast columns")
    horizon: int = Field(gt=0)
    frequency: str | None = Field(default=None, description="pandas offset alias, e.g. 'MS'")
    scaling: Literal["window", "standard", "none"]
    ensemble: int = Field(default=1, ge=1, description="networks whose forecasts the graph averages")
    skip_lag: int | None = Field(
        default=None, gt=0, description="the forecast adds the seasonal naive at this lag (a seasonal skip)"
    )
    skip_damping: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="with skip_lag: the last seasonal error is carried forward, damped this much per step",
    )
    metrics: Metrics | None = None
    intervals: dict[str, Any] | None = Field(
        default=None, description="interval calibration, when the model has intervals"
    )
    training_config: dict[str, Any] = Field(description="the resolved training config")
    data: DataInfo
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int | None = None
    framework: dict[str, str] = Field(default_factory=dict, description="library versions")

    @model_validator(mode="after")
    def _targets_lead_features(self) -> Manifest:
        if self.features[: len(self.targets)] != self.targets:
            raise ValueError("features must start with the targets, in the same order")
        if self.skip_damping is not None and self.skip_lag is None:
            raise ValueError("skip_damping needs skip_lag: it damps the seasonal skip's error")
        return self

    @property
    def covariates(self) -> list[str]:
        """Input-only columns (the features after the targets)."""
        return self.features[len(self.targets) :]
