"""Load and validate CSV / Parquet series into arrays the trainer can window.

Layouts:
- wide: one row per timestamp, one column per feature (``columns = "features"``,
  e.g. a trajectory's x and y) or per series (``columns = "series"``);
- long: one row per (series_id, timestamp), value columns beside them.

Every problem is a :class:`DataError` that names the series, column and rows
(rows are counted from 1, header not counted) so a user can fix the file.

The time column (dates, years or step numbers) and its spacing are read by
:mod:`training.timeaxis`. With ``steps = "time"`` rows must be evenly spaced;
with ``steps = "rows"`` they need only increase (trading days, business hours)
and each row is the next step.

NaN policy: leading and trailing rows with a missing value are dropped (a series
may start or end later than others); an interior run of at most ``max_gap``
missing points in a column is linearly interpolated; a longer run is rejected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from service.bundle import calendar, timeindex
from service.bundle.manifest import Known
from training.config import DataConfig
from training.timeaxis import (
    DataError,
    TimestampError,
    check_order,
    check_spacing,
    check_steps,
    normalize_frequency,
    parse_timestamps,
    reading_hint,
    season_for,
    stamp_bytes,
)

__all__ = ["DataError", "Dataset", "Series", "fingerprint", "load_dataset", "read_table", "season_for"]


@dataclass
class Series:
    """One series: ``values`` is ``(time, features)`` float32, targets first.

    ``timestamps`` is a ``pd.DatetimeIndex``, or an int64 ``pd.Index`` of step
    numbers when the time column holds plain integers (``0, 1, 2``).
    """

    id: str
    values: np.ndarray
    timestamps: pd.Index


@dataclass
class Dataset:
    """Validated series. Each series' ``values`` holds the ``sent`` columns (targets, covariates,
    the columns known in advance), the calendar's, then the known inputs' columns again
    (``known.columns``: future and calendar), which ``training.windows.cut`` reads a horizon ahead."""

    series: list[Series]
    targets: list[str]
    covariates: list[str]
    frequency: str | None  # a pandas alias or 'MS-15'; None for step numbers and steps="rows" (undated)
    source: str
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)
    known: Known | None = None  # inputs known in advance (data.future, data.calendar)

    @property
    def sent(self) -> list[str]:
        """The history's columns: targets, covariates, then the future columns' past values."""
        return self.targets + self.covariates + ([] if self.known is None else self.known.future)

    @property
    def now(self) -> list[str]:
        """The columns a window reads at its own steps: ``sent``, then the calendar's."""
        return self.sent + ([] if self.known is None else calendar.columns(self.known.calendar))

    def inputs(self, horizon: int) -> list[str]:
        """The model's input columns (``ModelSpec.features``) for a ``horizon``: ``now``, then the
        known inputs' columns read ``horizon`` steps ahead."""
        return self.now + ([] if self.known is None else self.known.ahead(horizon))

    @property
    def features(self) -> list[str]:
        """Every column of ``values``: ``now``, then the known inputs' (read ahead by the windows)."""
        return self.now + ([] if self.known is None else self.known.columns)

    @property
    def rows(self) -> int:
        return sum(len(s.values) for s in self.series)


def read_table(path: Path, fmt: str = "auto", delimiter: str = ",") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    kind = fmt if fmt != "auto" else ("parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv")
    try:
        df = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path, sep=delimiter)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as {kind}: {exc}") from exc
    header = str(df.columns[0]) if len(df.columns) == 1 else ""
    other = next((sep for sep in ";\t|," if sep != delimiter and sep in header), None)
    if kind == "csv" and other:  # one column can never be a series: the file uses another separator
        raise DataError(f"{path}: the header {header!r} is one field; set data.delimiter = {other!r}")
    return df


def _numeric(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = {}
    for name in columns:
        col = df[name]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype(float)
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna() & col.notna()
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            shown = ", ".join(f"row {r + 1} has {col.iloc[r]!r}" for r in rows[:5])
            raise DataError(f"column {name!r} is not numeric: {shown}")
        out[name] = num.astype("float64")
    return pd.DataFrame(out, index=df.index)


def _require(df: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(f"{what} column(s) {missing} not found; the columns are {list(df.columns)}")


def _fill_gaps(sid: str, frame: pd.DataFrame, rows: np.ndarray, max_gap: int) -> pd.DataFrame:
    """Trim NaN rows at the ends, interpolate short interior runs, reject long ones."""
    ok = frame.notna().all(axis=1).to_numpy()
    if not ok.any():
        raise DataError(f"series {sid!r}: no row has every value present")
    first, last = np.flatnonzero(ok)[[0, -1]]
    frame = frame.iloc[first : last + 1]
    rows = rows[first : last + 1]
    for name in frame.columns:
        missing = frame[name].isna().to_numpy()
        if not missing.any():
            continue
        edges = np.diff(np.concatenate([[0], missing.astype(int), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int(np.argmax(stops - starts))
        if stops[longest] - starts[longest] > max_gap:
            a, b = rows[starts[longest]] + 1, rows[stops[longest] - 1] + 1
            raise DataError(
                f"series {sid!r}, column {name!r}: {stops[longest] - starts[longest]} missing values "
                f"in a row at rows {a}-{b}; gaps up to data.max_gap={max_gap} are interpolated, "
                f"fill longer ones or raise max_gap"
            )
    return frame.interpolate(method="linear", limit_area="inside")


def fingerprint(series: list[Series], features: list[str]) -> str:
    digest = hashlib.sha256(repr(features).encode())
    for s in series:
        digest.update(s.id.encode())
        digest.update(stamp_bytes(s.timestamps))
        digest.update(np.ascontiguousarray(s.values).tobytes())
    return digest.hexdigest()


Group = tuple[str, np.ndarray, list[str]]  # a series: id, row positions in the file, its columns


def _groups(df: pd.DataFrame, cfg: DataConfig, targets: list[str]) -> tuple[list[Group], list[str]]:
    """The file's series, and the dataset's target names."""
    inputs = cfg.covariates + cfg.future
    if cfg.layout == "long":
        indices = df.groupby(cfg.series_id, sort=False).indices
        return [(str(sid), np.asarray(idx), targets + inputs) for sid, idx in indices.items()], targets
    rows = np.arange(len(df))
    if cfg.columns == "series":
        return [(name, rows, [name] + inputs) for name in targets], ["value"]
    return [(Path(cfg.path).stem, rows, targets + inputs)], targets


def _series(
    cfg: DataConfig, groups: list[Group], stamps: pd.Index, values: pd.DataFrame, freq: str | None
) -> tuple[list[Series], set[str]]:
    """Validated series and the frequencies their spacing shows (none for step numbers or steps='rows')."""
    series: list[Series] = []
    freqs: set[str] = set()
    for sid, idx, cols in groups:
        check_order(sid, stamps[idx], idx)
        frame = _fill_gaps(sid, values.iloc[idx][cols], idx, cfg.max_gap)
        kept = frame.index.to_numpy()  # row positions left after trimming NaN ends
        index = stamps[kept]
        if cfg.steps == "time" and isinstance(index, pd.DatetimeIndex):
            found = check_spacing(sid, index, kept, freq)
            freqs.update([found] if found else [])
        elif cfg.steps == "time":
            check_steps(sid, index, kept)
        arr = frame.to_numpy(dtype=np.float32)
        if cfg.tail is not None:
            arr, index = arr[-cfg.tail :], index[-cfg.tail :]
        series.append(Series(id=sid, values=arr, timestamps=index))
    return series, freqs


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read ``cfg.path`` and return validated series (targets first, then covariates)."""
    freq = normalize_frequency(cfg.frequency) if cfg.frequency else None
    df = read_table(cfg.path, cfg.format, cfg.delimiter).reset_index(drop=True)
    if df.empty:
        raise DataError(f"{cfg.path}: no rows")
    _require(df, [cfg.timestamp], "timestamp")
    keys = [cfg.timestamp] + ([cfg.series_id] if cfg.layout == "long" else [])
    if cfg.layout == "long":
        _require(df, [cfg.series_id], "series_id")
    _require(df, cfg.covariates, "covariate")
    _require(df, cfg.future, "future")
    inputs = cfg.covariates + cfg.future
    if cfg.targets:
        _require(df, cfg.targets, "target")
        targets = list(cfg.targets)
    else:
        targets = [c for c in df.columns if c not in keys and c not in inputs]
        if not targets:
            raise DataError(f"{cfg.path}: no value columns besides {keys + inputs}")
    values = _numeric(df, targets + inputs)
    groups, feature_targets = _groups(df, cfg, targets)
    column = df[cfg.timestamp]
    try:
        stamps = parse_timestamps(column, cfg.timestamp, cfg.date_format, cfg.dayfirst)
        series, freqs = _series(cfg, groups, stamps, values, freq)
    except TimestampError as exc:  # dates read month-first may be day-first ones: say so
        raise DataError(f"{exc}{reading_hint(column, cfg.date_format, cfg.dayfirst)}") from exc
    if len(freqs) > 1:
        raise DataError(f"series have different frequencies: {sorted(freqs)}; train one model per frequency")
    ds = Dataset(
        series=series,
        targets=feature_targets,
        covariates=list(cfg.covariates),
        frequency=freq or (freqs.pop() if freqs else None),
        source=str(cfg.path),
    )
    if cfg.future or cfg.calendar:
        _add_known(ds, cfg)
    ds.fingerprint = fingerprint(series, ds.features)
    return ds


def _add_known(ds: Dataset, cfg: DataConfig) -> None:
    """Append the known inputs' columns to every series (``Dataset.known``): the future columns
    again, then the calendar of each timestamp."""
    names: list[str] = []
    if cfg.calendar:
        parsed = timeindex.parse_frequency(ds.frequency)
        if parsed is None or not all(isinstance(s.timestamps, pd.DatetimeIndex) for s in ds.series):
            raise DataError(
                f"data.calendar needs dated data at a frequency the service knows (got "
                f"{ds.frequency or 'no frequency'}): a timestamp column of dates and steps = 'time'"
            )
        names = calendar.auto_features(parsed, cfg.holidays) if cfg.calendar == "auto" else list(cfg.calendar)
        if cfg.holidays is not None:
            try:
                calendar.check_country(cfg.holidays)
            except ValueError as exc:
                raise DataError(f"data.holidays: {exc}") from None
    ds.known = Known(
        future=list(cfg.future), calendar=names, holidays=cfg.holidays if "holiday" in names else None
    )
    start = len(ds.targets) + len(ds.covariates)  # the future columns' place among the sent ones
    for s in ds.series:
        days = np.empty((len(s.values), 0), np.float32)
        if names:
            stamps = cast(pd.DatetimeIndex, s.timestamps).to_pydatetime()
            days = calendar.features(list(stamps), names, cfg.holidays)
        future = s.values[:, start : start + len(cfg.future)]
        s.values = np.concatenate([s.values, days, future, days], axis=1).astype(np.float32)
