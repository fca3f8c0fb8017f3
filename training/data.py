"""Load and validate CSV / Parquet series into arrays the trainer can window.

Layouts:
- wide: one row per timestamp, one column per feature (``columns = "features"``,
  e.g. a trajectory's x and y) or per series (``columns = "series"``);
- long: one row per (series_id, timestamp), value columns beside them.

Every problem is a :class:`DataError` that names the series, column and rows
(rows are counted from 1, header not counted) so a user can fix the file.

NaN policy: leading and trailing rows with a missing value are dropped (a series
may start or end later than others); an interior run of at most ``max_gap``
missing points in a column is linearly interpolated; a longer run is rejected.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from training.config import DataConfig


class DataError(ValueError):
    """The data cannot be used as given; the message says where and why."""


@dataclass
class Series:
    """One series: ``values`` is ``(time, features)`` float32, targets first."""

    id: str
    values: np.ndarray
    timestamps: pd.DatetimeIndex


@dataclass
class Dataset:
    series: list[Series]
    targets: list[str]
    covariates: list[str]
    frequency: str | None
    source: str
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return self.targets + self.covariates

    @property
    def rows(self) -> int:
        return sum(len(s.values) for s in self.series)


def season_for(frequency: str | None) -> int:
    """Seasonal period implied by a pandas frequency alias (1 when unknown)."""
    if not frequency:
        return 1
    offset = to_offset(frequency)
    if isinstance(offset, Tick):  # fixed-length steps: a day of them, or a week of days
        step = pd.Timedelta(offset)
        day = pd.Timedelta(days=1)
        if step < day and day % step == pd.Timedelta(0):
            return int(day // step)
        return 7 if step == day else 1
    base = offset.rule_code.split("-")[0].lstrip("B")
    if base == "D":
        return 7 if offset.n == 1 else 1
    if base.startswith("M") or base.startswith("SM"):
        return 12 if offset.n == 1 else 1
    if base.startswith("Q"):
        return 4 if offset.n == 1 else 1
    if base.startswith("W"):
        return 52 if offset.n == 1 else 1
    return 1


def read_table(path: Path, fmt: str = "auto") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    kind = fmt if fmt != "auto" else ("parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv")
    try:
        return pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as {kind}: {exc}") from exc


def _parse_timestamps(col: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
    elif pd.api.types.is_integer_dtype(col) and col.between(1, 9999).all():
        parsed = pd.to_datetime(col.astype(str).str.zfill(4), format="%Y", errors="coerce")  # years
    else:
        parsed = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        shown = ", ".join(f"row {r + 1} ({col.iloc[r]!r})" for r in rows[:5])
        raise DataError(f"column {name!r}: {len(rows)} timestamp(s) cannot be parsed: {shown}")
    return parsed.dt.tz_localize(None) if getattr(parsed.dt, "tz", None) is not None else parsed


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


def _check_order(sid: str, ts: pd.Series, rows: np.ndarray) -> None:
    values = ts.to_numpy()
    dup = np.flatnonzero(values[1:] == values[:-1])
    if len(dup) == 0:
        seen = pd.Series(values).duplicated(keep=False).to_numpy()
        dup_any = np.flatnonzero(seen)
        if len(dup_any):
            i = dup_any[0]
            raise DataError(f"series {sid!r}: duplicate timestamp {ts.iloc[i]} (row {rows[i] + 1})")
    else:
        i = dup[0]
        raise DataError(
            f"series {sid!r}: duplicate timestamp {ts.iloc[i]} at rows {rows[i] + 1} and {rows[i + 1] + 1}"
        )
    back = np.flatnonzero(values[1:] < values[:-1])
    if len(back):
        i = back[0]
        raise DataError(
            f"series {sid!r}: timestamps are not sorted: row {rows[i + 1] + 1} ({ts.iloc[i + 1]}) "
            f"comes after row {rows[i] + 1} ({ts.iloc[i]}); sort the file by time"
        )


def _infer_freq(ts: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as a string alias on pandas 2 and 3 (3 warns it will return an offset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(ts)
    return freq if freq is None or isinstance(freq, str) else freq.freqstr


def _check_spacing(sid: str, ts: pd.DatetimeIndex, rows: np.ndarray, freq: str | None) -> str | None:
    """Return the series' frequency; raise on a missing or extra step."""
    if len(ts) < 3:
        return freq
    inferred = _infer_freq(ts)
    if freq is None and inferred is not None:
        return inferred
    guess = freq or _infer_freq(ts[:3])
    if guess is None:
        raise DataError(f"series {sid!r}: cannot infer a regular frequency from the first timestamps")
    expected = pd.date_range(ts[0], periods=len(ts), freq=guess)
    wrong = np.flatnonzero(expected != ts)
    if len(wrong) == 0:
        return guess
    i = wrong[0]
    raise DataError(
        f"series {sid!r}: irregular spacing at row {rows[i] + 1}: expected {expected[i]} after "
        f"{ts[i - 1]} (frequency {guess}), found {ts[i]}; add the missing rows (values may be "
        f"NaN, gaps up to max_gap are interpolated) or drop the extra ones"
    )


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
        digest.update(s.timestamps.as_unit("ns").asi8.tobytes())  # same data, any resolution
        digest.update(np.ascontiguousarray(s.values).tobytes())
    return digest.hexdigest()


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read ``cfg.path`` and return validated series (targets first, then covariates)."""
    df = read_table(cfg.path, cfg.format).reset_index(drop=True)
    if df.empty:
        raise DataError(f"{cfg.path}: no rows")
    _require(df, [cfg.timestamp], "timestamp")
    keys = [cfg.timestamp] + ([cfg.series_id] if cfg.layout == "long" else [])
    if cfg.layout == "long":
        _require(df, [cfg.series_id], "series_id")
    _require(df, cfg.covariates, "covariate")
    if cfg.targets:
        _require(df, cfg.targets, "target")
        targets = list(cfg.targets)
    else:
        targets = [c for c in df.columns if c not in keys and c not in cfg.covariates]
        if not targets:
            raise DataError(f"{cfg.path}: no value columns besides {keys + cfg.covariates}")
    values = _numeric(df, targets + cfg.covariates)
    stamps = _parse_timestamps(df[cfg.timestamp], cfg.timestamp)
    row_numbers = np.arange(len(df))

    groups: list[tuple[str, np.ndarray, list[str]]] = []  # (id, row indices, columns)
    if cfg.layout == "long":
        for sid, idx in df.groupby(cfg.series_id, sort=False).indices.items():
            groups.append((str(sid), np.asarray(idx), targets + cfg.covariates))
        feature_targets = targets
    elif cfg.columns == "series":
        for name in targets:
            groups.append((name, row_numbers, [name] + cfg.covariates))
        feature_targets = ["value"]
    else:
        groups.append((Path(cfg.path).stem, row_numbers, targets + cfg.covariates))
        feature_targets = targets

    series: list[Series] = []
    freqs: set[str] = set()
    for sid, idx, cols in groups:
        ts = stamps.iloc[idx]
        _check_order(sid, ts, idx)
        frame = _fill_gaps(sid, values.iloc[idx][cols], idx, cfg.max_gap)
        kept = frame.index.to_numpy()  # row positions left after trimming NaN ends
        index = pd.DatetimeIndex(stamps.loc[frame.index])
        freq = _check_spacing(sid, index, kept, cfg.frequency)
        if freq:
            freqs.add(freq)
        arr = frame.to_numpy(dtype=np.float32)
        if cfg.tail is not None:
            arr, index = arr[-cfg.tail :], index[-cfg.tail :]
        series.append(Series(id=sid, values=arr, timestamps=index))
    if len(freqs) > 1:
        raise DataError(f"series have different frequencies: {sorted(freqs)}; train one model per frequency")
    ds = Dataset(
        series=series,
        targets=feature_targets,
        covariates=list(cfg.covariates),
        frequency=cfg.frequency or (freqs.pop() if freqs else None),
        source=str(cfg.path),
    )
    ds.fingerprint = fingerprint(series, ds.features)
    return ds
