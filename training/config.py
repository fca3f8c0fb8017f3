"""One validated training config: a TOML file plus command-line overrides.

Every path written in a config file is relative to that file; a path given on
the command line (``--model-dir``, ``--set data.path=...``) is relative to the
working directory, as for any command. The ``[model]`` section is the bundle
contract's ``NetworkSpec``, so the model options are described once.

The resolved config, less the ``[machine]`` section (where and how this run
trains, not what it trains), is stored in every bundle's manifest, so a
retraining job can rebuild the same model from data, not from pickles.
``docs/configuration.md`` is generated from the descriptions below
(``python -m training.config_doc``).
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.bundle.manifest import GENERATIVE, NAME_PATTERN, NetworkSpec

log = logging.getLogger("seqcast.config")

# Older names still read from config files and stored manifests: old -> new (section, key).
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("model", "skip_lag"): ("model", "base_lag"),
    ("model", "skip_damping"): ("model", "base_damping"),
    ("model", "skip_gate"): ("model", "correction_gate"),
    ("export", "tolerance"): ("export", "parity_tolerance"),
    ("train", "device"): ("machine", "device"),
    ("train", "threads"): ("machine", "threads"),
    ("train", "progress"): ("machine", "progress"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Where the series are and how to read them."""

    path: Path = Field(description="CSV or Parquet file (relative to the config file)")
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto", description="file format; auto: by extension (.parquet, .pq: Parquet; else CSV)"
    )
    delimiter: str = Field(
        default=",", min_length=1, max_length=1, description="CSV field separator, e.g. ';' or '\\t'"
    )
    layout: Literal["wide", "long"] = Field(
        default="wide",
        description="wide: one row per timestamp; long: one row per (series_id, timestamp)",
    )
    timestamp: str = Field(default="timestamp", description="the time column")
    date_format: str | None = Field(
        default=None,
        description="strftime format of the time column, e.g. '%d/%m/%Y'; None: ISO 8601 and the "
        "usual formats, read month-first unless dayfirst",
    )
    dayfirst: bool = Field(default=False, description="read ambiguous dates such as 03/04/2020 day-first")
    steps: Literal["time", "rows"] = Field(
        default="time",
        description="time: rows must be evenly spaced in time (a missing step is an error); rows: each "
        "row is the next step whatever the calendar says (trading days, business hours), timestamps "
        "need only increase; give the season in steps with evaluate.season; forecasts are not dated",
    )
    series_id: str = Field(default="series_id", description="the series column (long layout)")
    columns: Literal["features", "series"] = Field(
        default="features",
        description="wide layout: the value columns are the features of ONE series (a trajectory's x "
        "and y) or separate univariate series that share one model",
    )
    targets: list[str] = Field(
        default_factory=list, description="columns to forecast; empty: every column but the others named"
    )
    covariates: list[str] = Field(
        default_factory=list, description="input-only columns, never forecast, known for the past only"
    )
    future: list[str] = Field(
        default_factory=list,
        description="input-only columns known in advance (a workday flag, a planned promotion, a "
        "temperature forecast): the model reads them with the history and for every forecast step, "
        "and a request sends their values for the forecast steps too (future)",
    )
    calendar: list[str] | Literal["auto"] = Field(
        default_factory=list,
        description="calendar features of each step, known in advance for any date: hour, dayofweek, "
        "weekofyear, month, holiday; auto: those that change from step to step at the data's frequency "
        "(holiday when data.holidays is set). Needs dated data; requests must then be dated too",
    )
    holidays: str | None = Field(
        default=None,
        description="country (AU) or country-region (AU-VIC) of the holiday feature, as the holidays "
        "package names them",
    )
    frequency: str | None = Field(
        default=None, description="pandas offset alias ('MS', 'W-SUN', '30min'); None: inferred"
    )
    max_gap: int = Field(
        default=3, ge=0, description="interior runs of up to this many missing values are interpolated"
    )
    tail: int | None = Field(default=None, gt=0, description="keep only the last N points of each series")


class SplitConfig(_Section):
    """The split by time: the newest points of each series are held out."""

    test: int | None = Field(
        default=None,
        gt=0,
        description="points held out at the end of each series for the test; None: one horizon (the "
        "M4 competition's protocol)",
    )
    val: int | None = Field(
        default=None,
        gt=0,
        description="points before the test split, for early stopping and the automatic recipe's "
        "choices (every origin in it is scored); None: two horizons, one for short series",
    )


class WindowConfig(_Section):
    """What the model reads and forecasts."""

    length: int | None = Field(
        default=None,
        gt=0,
        description="input time steps; None: two seasons or two horizons, whichever is longer, "
        "shortened for short series",
    )
    horizon: int = Field(default=12, gt=0, description="forecast steps")
    stride: int = Field(default=1, gt=0, description="steps between training windows")
    min_history: int | None = Field(
        default=None,
        gt=0,
        description="shortest history a request may send (generation from a short context); None: "
        "the window's length. Below it needs model.head shift or seq2seq: each training batch is "
        "cut to a random length between min_history and length, so the model learns to forecast "
        "from any of them",
    )


class TrainConfig(_Section):
    """The training loop."""

    epochs: int = Field(default=200, gt=0, description="most epochs; early stopping usually ends sooner")
    batch_size: int = Field(default=32, gt=0, description="windows per optimiser step")
    lr: float = Field(default=3e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(default=0.0, ge=0, description="Adam weight decay")
    loss: Literal["mse", "mae", "huber"] = Field(default="mae", description="in normalised units")
    patience: int = Field(
        default=20, gt=0, description="epochs without a better validation loss before stopping early"
    )
    lr_patience: int = Field(
        default=6, gt=0, description="epochs without improvement before the learning rate drops"
    )
    lr_factor: float = Field(default=0.5, gt=0, lt=1, description="factor of each learning-rate drop")
    clip_norm: float | None = Field(
        default=1.0, ge=0, description="clip the gradient norm to this; 0 (or None): no clipping"
    )
    seed: int = Field(default=0, description="seed of weights and shuffling: same seed, same model on CPU")
    ensemble: int = Field(
        default=1,
        ge=1,
        description="train this many members with seeds seed*K ... seed*K+K-1; the graph averages "
        "them (K times the training and serving cost)",
    )
    validate_initial: bool = Field(
        default=False,
        description="score the initial weights as epoch 0, so early stopping keeps them when no epoch "
        "beats them (with model.base_lag: the seasonal base itself)",
    )


class MachineConfig(_Section):
    """Where and how this run trains; never stored in a bundle, never inherited by a retrain."""

    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda if available")
    threads: int | None = Field(
        default=1,
        gt=0,
        description="torch intra-op threads. 1 suits these small networks: with more, the threads of "
        "one small matrix product mostly wait on each other (a recipe run took 10 s on 1 thread and "
        "186 s on 2 on a busy 2-core machine); raise it for hidden sizes in the hundreds. None: torch's",
    )
    jobs: int | None = Field(
        default=None,
        gt=0,
        description="processes that train the automatic recipe's network candidates (a GRU and an "
        "LSTM) side by side, each on `threads` threads: same weights as one after the other, in the "
        "time of the slower (CPU only). 1: one after the other. None: as many as the cores allow",
    )
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="the forward pass's precision in training: bf16 autocasts it (weights, optimiser "
        "and gradients stay float32, so the exported model is float32). GPUs only (Ampere and "
        "newer) whose torch autocasts recurrent cells to bfloat16 (stock cuDNN gives float16); "
        "elsewhere a warning and float32",
    )
    cuda_graph: bool = Field(
        default=True,
        description="on a GPU, capture the whole training step (forward, backward, clipping, Adam) "
        "in one CUDA graph and replay it: small recurrent networks are launch-bound, and this "
        "makes their steps several times faster. Every batch is then full (an epoch's last "
        "ragged batch is dropped). Not with torchrun or generation from a short context; a "
        "failed capture falls back to eager steps",
    )
    progress: bool = Field(default=True, description="a progress bar on a terminal")


class EvaluateConfig(_Section):
    """Scoring on the test split."""

    season: int | None = Field(
        default=None,
        gt=0,
        description="seasonal period in steps for MASE and the seasonal naive; None: from the "
        "frequency (monthly 12, quarterly 4, weekly 52, daily 7, hourly 24)",
    )


class ExportConfig(_Section):
    """The ONNX export and where the bundle is published."""

    name: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="model name; None: the config file's name"
    )
    model_dir: Path | None = Field(
        default=None,
        description="bundle store (relative to the config file); None: $SEQCAST_MODEL_DIR, else "
        "'models' in the working directory",
    )
    exporter: Literal["torchscript", "dynamo"] = Field(
        default="torchscript",
        description="torchscript emits native ONNX LSTM/GRU/RNN operators with a dynamic time axis; "
        "dynamo (torch.export) unrolls the recurrence and freezes the time axis",
    )
    opset: int = Field(default=17, ge=14, description="ONNX opset")
    parity_tolerance: float = Field(
        default=1e-4,
        gt=0,
        description="largest |onnxruntime - torch| allowed, times the training targets' std (plus "
        "16 float32 ulps of the values' magnitude); a graph off by more is never published",
    )
    make_current: bool = Field(default=True, description="point CURRENT at the new version")


class RetrainConfig(_Section):
    """The retraining job: when a challenger replaces the model in service."""

    metric: Literal["mase", "mae", "rmse", "smape"] = Field(
        default="mase", description="compared on the fresh data's test split (lower is better)"
    )
    margin: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="promote only if challenger < champion x (1 - margin)",
    )
    config_from: Literal["champion", "job"] = Field(
        default="champion",
        description="champion: the champion's model, window and train sections with this job's data "
        "(refresh the data, keep the recipe; explicit --set overrides still apply); job: this config "
        "as it is (roll out a new recipe, which must still win)",
    )


class Config(_Section):
    """A whole training config; every section but [data] may be left out."""

    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    model: NetworkSpec | None = Field(
        default=None,
        description="write this section to choose the network by hand; leave it out and the automatic "
        "recipe chooses the model on the validation windows (docs/models.md)",
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    machine: MachineConfig = Field(default_factory=MachineConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.model is not None and self.window.length is not None:
            self.model.check_window(self.window.length, self.window.horizon)
        shortest = self.window.min_history
        if shortest is not None:
            if self.window.length is not None and shortest > self.window.length:
                raise ValueError(f"window.min_history ({shortest}) must not exceed window.length")
            if self.model is None or self.model.head not in GENERATIVE:
                raise ValueError(
                    "window.min_history needs a [model] with a head that generates from a short "
                    f"context: {' or '.join(GENERATIVE)}"
                )
        data = self.data
        for a, b in (("targets", "covariates"), ("targets", "future"), ("covariates", "future")):
            overlap = set(getattr(data, a)) & set(getattr(data, b))
            if overlap:
                raise ValueError(f"columns in both data.{a} and data.{b}: {sorted(overlap)}")
        if (
            (data.future or data.calendar)
            and self.model is not None
            and self.model.head not in ("direct", "mlp")
        ):
            raise ValueError(
                f"inputs known in advance (data.future, data.calendar) need the direct or mlp head, not "
                f"{self.model.head}"
            )
        if data.calendar != "auto" and ("holiday" in data.calendar) != (data.holidays is not None):
            raise ValueError("data.calendar's holiday feature needs data.holidays (a country), and only it")
        return self

    @property
    def name(self) -> str:
        """The model name (resolved by ``load_config``; 'model' for a config built in code)."""
        return self.export.name or "model"

    @property
    def model_dir(self) -> Path:
        """The bundle store: export.model_dir, else ``default_model_dir()``."""
        return self.export.model_dir if self.export.model_dir is not None else default_model_dir()


def default_model_dir() -> Path:
    """$SEQCAST_MODEL_DIR (the service's setting), else ``models`` in the working directory."""
    return Path(os.environ.get("SEQCAST_MODEL_DIR") or "models")


# Sections a retraining job takes from the champion's stored config (config_from = "champion").
RECIPE_SECTIONS = ("model", "window", "train", "evaluate")


def _parse_value(text: str) -> Any:
    """A TOML literal if it is one (``5``, ``true``, ``[1, 2]``), else the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def rename_old_keys(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Move keys under their current names (``RENAMED``), in place; warns when ``where`` names a file."""
    for (section, key), (new_section, new_key) in RENAMED.items():
        old = raw.get(section)
        if isinstance(old, dict) and key in old:
            target = raw.setdefault(new_section, {})
            if new_key in target:
                raise ValueError(f"{section}.{key} and {new_section}.{new_key} are the same option: keep one")
            target[new_key] = old.pop(key)
            if where:
                log.warning("%s: %s.%s is now %s.%s", where, section, key, new_section, new_key)
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a raw config dict (in place)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"override {item!r}: expected section.key=value, e.g. train.epochs=5")
        section, _, field = key.strip().partition(".")
        part = rename_old_keys({section: {field: _parse_value(value.strip())}}, where="--set")
        for name, values in part.items():
            if values:
                raw.setdefault(name, {}).update(values)
    return raw


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative paths written in a config file are relative to that file (in place)."""
    for section, key in (("data", "path"), ("export", "model_dir")):
        value = raw.get(section, {}).get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            raw[section][key] = str((base / value).resolve())


def load_config(path: Path | None, overrides: list[str] | None = None) -> Config:
    """Read a TOML file, apply overrides, validate; the name defaults to the file's stem."""
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        rename_old_keys(raw, where=str(path))
        _resolve_paths(raw, Path(path).parent)
    apply_overrides(raw, overrides or [])
    if path is not None and not raw.get("export", {}).get("name"):
        raw.setdefault("export", {})["name"] = Path(path).stem
    return Config.model_validate(raw)


def stored_config(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A config stored in a manifest or checkpoint (any age), with overrides applied."""
    raw = rename_old_keys({k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()})
    return Config.model_validate(apply_overrides(raw, overrides or []))


def config_to_dict(config: Config) -> dict[str, Any]:
    """JSON-ready dict of the resolved config as stored in the manifest: no [machine] section."""
    return config.model_dump(mode="json", exclude={"machine"})
