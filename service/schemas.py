"""Request and response models of the ``/v1`` API and the ops routes; the OpenAPI document is built
from them, and every answer is serialised through them.

Requests are strict (no ``"12"`` for 12, no unknown fields, so a typo such as
``horizn`` is an error rather than silently ignored). pydantic validates the
envelope; the numbers in ``values`` are checked in one place, ``service.values``
(a type scan and one numpy call per batch, where per-element validation costs
milliseconds on a large batch), so their JSON schema is declared here by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    WithJsonSchema,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from service.bundle.manifest import Metrics, ModelSpec, Selection
from service.values import F32_MAX

_NUMBER = {"type": "number", "minimum": -F32_MAX, "maximum": F32_MAX}  # beyond float32: a 422
VALUES_SCHEMA: dict[str, Any] = {
    "description": (
        "The history, oldest first. Plain numbers for a model with one feature; rows of "
        "len(features) numbers (targets first, then covariates) otherwise. Finite numbers only. "
        "History longer than the model's window is accepted and its tail used."
    ),
    "oneOf": [
        {"type": "array", "items": _NUMBER, "minItems": 1},
        {"type": "array", "items": {"type": "array", "items": _NUMBER, "minItems": 1}, "minItems": 1},
    ],
    "examples": [[112, 118, 132, 129, 121, 135]],
}


FUTURE_SCHEMA: dict[str, Any] = {
    "description": (
        "A model with inputs known in advance (GET /v1/models/<name>: known.future): each such "
        "column's values for the forecast steps, one per step of horizon (every step of the model's "
        "horizon for a model whose steps read all of them: known.needs_full_horizon). Their past "
        "values come in values rows, after the targets and covariates."
    ),
    "type": "object",
    "additionalProperties": {"type": "array", "items": _NUMBER, "minItems": 1},
    "examples": [
        {"WorkDay": [1, 1, 0, 0, 1, 1, 1], "Temperature": [24.0, 26.5, 31.0, 22.1, 20.3, 19.8, 21.0]}
    ],
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SeriesIn(_Request):
    """One series to forecast."""

    id: str | None = Field(default=None, min_length=1, max_length=200, description="echoed in the answer")
    # Not validated here: service.values checks everything about them (that they are a
    # list, each number, the shape against the model) and names the element at fault.
    values: Annotated[SkipValidation[Any], WithJsonSchema(VALUES_SCHEMA)]
    start: str | None = Field(
        default=None,
        max_length=64,
        description="ISO 8601 time of values[0]; with the model's frequency it dates the forecast",
        examples=["1949-01-01"],
    )
    timestamps: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        min_length=1,
        description="ISO 8601 time of every value, increasing (instead of start)",
    )
    # checked in service.known, with the horizon and the model at hand
    future: Annotated[SkipValidation[Any], WithJsonSchema(FUTURE_SCHEMA)] = None
    # "start or timestamps, not both" is checked in service.forecast.prepare, which
    # visits every series anyway: a Python validator here would run per series.


class ForecastRequest(_Request):
    """``POST /v1/models/<name>/forecast``: one series or many, forecast in one model call."""

    series: list[SeriesIn] = Field(min_length=1, description="at most SEQCAST_MAX_SERIES series")
    horizon: int | None = Field(
        default=None, ge=1, description="steps to return; default and maximum: the model's"
    )
    levels: list[Annotated[float, Field(gt=0, lt=100)]] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="prediction-interval levels in percent, e.g. [80, 95]: each forecast then carries "
        "intervals; any level up to the model's intervals.max_level (GET /v1/models/<name>), or for a "
        "quantile head exactly its intervals.levels",
        examples=[[80, 95]],
        json_schema_extra={"uniqueItems": True},  # a level asked twice is a 422
    )


class Interval(TypedDict):
    """One level's range (a TypedDict: the forecast answer is written by ``service.forecast.answer``
    straight from numpy, in the bytes this schema's model would write)."""

    lower: Annotated[list[float] | list[list[float]], Field(description="per step, shaped like mean")]
    upper: Annotated[list[float] | list[list[float]], Field(description="per step, shaped like mean")]


class Forecast(BaseModel):
    id: str | None = Field(description="the request's id for this series, or null")
    mean: list[float] | list[list[float]] = Field(
        description="point forecast, one entry per step: numbers for a single-target model, "
        "rows of len(targets) numbers for a multi-target one"
    )
    timestamps: list[str] | None = Field(
        default=None,
        description="time of each forecast step; present when the request dated the series "
        "(start or timestamps) and the model knows its frequency",
    )
    intervals: dict[str, Interval] | None = Field(
        default=None,
        description="level in percent (as asked: '80', '97.5') -> the range that holds the actual value "
        "with that probability: calibrated per step on the model's errors over past windows, or "
        "learned by its quantile head; present when the request asked for levels",
    )


class ForecastResponse(BaseModel):
    model: str
    version: str = Field(description="the bundle version that produced this answer (also X-Model-Version)")
    horizon: int
    targets: list[str]
    forecasts: list[Forecast] = Field(description="in the order of the request's series")


ModelStatus = Literal["ready", "failed", "not_loaded"]


class IntervalsInfo(BaseModel):
    """What ``levels`` a model serves (the manifest's ``intervals``, without its table)."""

    method: str = Field(
        description="split-conformal: quantiles of the errors on every window before the test split, "
        "any level up to max_level; quantile: bounds the network learned, exactly those levels"
    )
    scale: str = Field(
        description="mean-abs-change: widths scale with the input window's own spread; model: the graph's"
    )
    windows: int = Field(
        description="windows the calibration was made on: every origin before the test split "
        "(a panel's random subset), or a hand-written model's validation windows"
    )
    errors: int = Field(description="scaled errors it pools: windows x horizon steps (per target)")
    max_level: float = Field(
        description="the highest level served, in percent: 100 N / (N + 1) for N conformal errors; a "
        "quantile head's highest learned level"
    )
    levels: list[float] | None = Field(
        default=None, description="quantile: the only levels served (the network learned them); null: any"
    )
    series: int = Field(
        default=0,
        description="series of the training panel with widths of their own: a /v1 series whose id is "
        "its training id gets them, any other the pooled widths; 0: one calibration for every series",
    )


class KnownInfo(BaseModel):
    """What a model with inputs known in advance needs in a request (the manifest's spec.known)."""

    future: list[str] = Field(
        description="columns a request sends in each series' future, one value per forecast step "
        "(their past values go in values rows, after the targets and covariates)"
    )
    calendar: list[str] = Field(description="calendar features the service computes from the dates")
    holidays: str | None = Field(description="country (or country-region) of the holiday feature")
    needs_dates: bool = Field(description="whether every series must be dated (start or timestamps)")
    needs_full_horizon: bool = Field(
        description="whether future holds the model's whole horizon whatever horizon is asked (its "
        "forecast of each step reads every step's known inputs); false: as many values as steps asked"
    )
    sent: list[str] = Field(description="the columns of each values row, in order")


class ModelInfo(BaseModel):
    name: str
    status: ModelStatus
    version: str | None = Field(
        description="the version this worker serves (or would load: CURRENT); the last good one "
        "while CURRENT's fails to load"
    )
    current: str | None = Field(description="the version CURRENT names on disk (null: missing or bad)")
    versions: list[str] = Field(description="published versions, oldest first")
    created: datetime | None = None
    spec: ModelSpec | None = Field(
        default=None, description="the model as its bundle describes it (the manifest's spec, as it is)"
    )
    timestamps_supported: bool = Field(
        default=False,
        description="whether forecasts carry timestamps (the frequency is known to the service)",
    )
    min_history: int | None = Field(
        default=None,
        description="the fewest values a series may send (spec.input_window.min_length): the window "
        "the model was trained on, or less for a model that generates from a short context",
    )
    known: KnownInfo | None = Field(
        default=None, description="inputs known in advance the model reads; absent: none"
    )
    max_horizon: int | None = Field(
        default=None, description="the most steps a request may ask (spec.horizon); fewer: the first ones"
    )
    metrics: Metrics | None = None
    selection: Selection | None = Field(
        default=None, description="how the automatic recipe chose the model (the manifest's, as it is)"
    )
    intervals: IntervalsInfo | None = Field(
        default=None, description="the levels this model serves; absent: it serves no intervals"
    )
    error: str | None = Field(default=None, description="why the model could not be loaded")
    failed_version: str | None = Field(
        default=None,
        description="a version that failed to load while an older one stays served (hot reload keeps "
        "the last good version)",
    )


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class FailedLoad(BaseModel):
    version: str | None = Field(description="the version that failed to load (null: CURRENT unreadable)")
    error: str


class Readiness(BaseModel):
    """``GET /readyz`` when ready (503 with an ``ErrorResponse`` naming each model that is not)."""

    ready: bool
    models: dict[str, ModelStatus]
    served: dict[str, str] = Field(description="model -> the version this worker serves")
    wanted: dict[str, str | None] = Field(
        default_factory=dict,
        description="model -> the version CURRENT names (null: CURRENT is missing or bad); "
        "differs from served while the last good version stands in for a version that fails to load",
    )
    failed: dict[str, FailedLoad] = Field(
        description="model -> the version that failed to load (null: CURRENT itself is bad) "
        "while the last good one stays served"
    )


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="path to the field, e.g. ['series', 0, 'values']")
    msg: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable: invalid_request, model_not_found, ...")
    message: str
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    error: ErrorBody
