"""The page a person opens: ``report/index.html`` in every bundle, one file with no external assets.

Two steps, so the page can be rebuilt from the bundle alone (``seqcast report BUNDLE``):

* ``collect`` (at export, where the data and the served graph are at hand)
  gathers the numbers into ``report/data.json``: the latest test window of
  each shown series (the 12 largest of a big panel) with its actuals, the
  forecast, the seasonal naive and the 80 % and 95 % intervals; the loss
  curves; the error by horizon step; the coverage by level on the test split.
* ``render`` turns ``data.json`` and the manifest (the candidates'
  validation scores, the chosen model, the test metrics) into HTML, with
  matplotlib figures embedded as data URIs and a series selector in a few
  lines of inline script. Every string from the data is escaped; a
  Content-Security-Policy lets the page load nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle import intervals
from service.bundle.manifest import Manifest
from service.bundle.store import load_manifest
from training.config import SplitConfig
from training.data import Dataset
from training.evaluate import mase_scales, seasonal_naive
from training.report import loss_curve, plt, png
from training.train import TrainResult
from training.windows import Windows

SHOWN = 12  # series drawn: all of a small panel, the largest of a big one
BANDS = (80.0, 95.0)  # the intervals shaded in the forecast figures
COVERAGE_LEVELS = (50.0, 80.0, 90.0, 95.0)  # the levels whose coverage the page reports
PAGE = "report/index.html"
DATA = "report/data.json"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _latest(test: Windows) -> dict[int, int]:
    """series -> the row of its latest test window."""
    out: dict[int, int] = {}
    for i, (k, t) in enumerate(zip(test.series, test.origin, strict=True)):
        if int(k) not in out or t > test.origin[out[int(k)]]:
            out[int(k)] = i
    return out


def _stamp(value: Any) -> str:
    """A date at midnight as the date alone (monthly data: 1960-12-01), any other time in full."""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    return str(value)


def collect(
    ds: Dataset,
    test: Windows,
    pred: np.ndarray,
    manifest: Manifest,
    result: TrainResult,
    season: int,
    split: SplitConfig,
    learned: np.ndarray | None = None,
) -> dict[str, Any]:
    """The numbers the page shows (JSON-ready); ``test``: the test windows the metrics scored,
    ``pred``: the served graph's forecasts of them, ``(n, horizon, targets)``; ``learned``: a
    quantile head's bounds of them, ``(2, levels, n, horizon, targets)``."""
    snaive = seasonal_naive(ds, test, season)
    nt, horizon = len(ds.targets), test.y.shape[1]
    latest = _latest(test)
    size = {k: float(np.abs(ds.series[k].values[:, :nt]).mean()) for k in latest}
    shown = sorted(latest, key=lambda k: -size[k])[:SHOWN] if len(latest) > SHOWN else sorted(latest)
    cal = manifest.intervals
    # every level the page uses, bounded once: shaded in the figures (BANDS), scored (COVERAGE_LEVELS)
    served = [] if cal is None else [lv for lv in (*BANDS, *COVERAGE_LEVELS) if lv <= cal.max_level]
    if cal is not None and cal.method == "quantile":  # a quantile head: the levels it learned
        served = list(cal.levels)
    asked = sorted(set(served))
    lower = upper = np.empty((0, *pred.shape), dtype=np.float32)  # (levels, n, horizon, targets)
    if cal is not None and asked:
        factors = intervals.series_factors(cal, [ds.series[int(k)].id for k in test.series])
        lower, upper = intervals.stacked_bounds(cal, test.x, pred, asked, learned, factors)
    shaded = [(intervals.level_key(lv), asked.index(lv)) for lv in BANDS if lv in asked]
    series = []
    for k in shown:
        i, s = latest[k], ds.series[k]
        t = int(test.origin[i])
        keep = min(t, max(3 * horizon, test.x.shape[1]))
        series.append(
            {
                "id": s.id,
                "history_time": [_stamp(v) for v in s.timestamps[t - keep : t]],
                "history": s.values[t - keep : t, :nt].tolist(),
                "time": [_stamp(v) for v in s.timestamps[t : t + horizon]],
                "actual": test.y[i].tolist(),
                "forecast": pred[i].tolist(),
                "seasonal_naive": snaive[i].tolist(),
                "intervals": {key: [lower[n][i].tolist(), upper[n][i].tolist()] for key, n in shaded},
            }
        )
    scale = mase_scales(ds, split, season)[test.series][:, None, :]  # (n, 1, targets)
    by_step = {
        "model": np.nanmean(np.abs(pred - test.y) / scale, axis=(0, 2)).tolist(),
        "seasonal naive": np.nanmean(np.abs(snaive - test.y) / scale, axis=(0, 2)).tolist(),
    }
    coverage = [
        {"level": lv, "observed": float(((lower[n] <= test.y) & (test.y <= upper[n])).mean() * 100)}
        for n, lv in enumerate(asked)
        if lv in COVERAGE_LEVELS or (cal is not None and cal.method == "quantile")
    ]
    return {
        "targets": list(ds.targets),
        "series_total": len(ds.series),
        "test_windows": len(test),
        "test_points": int(test.y.size),
        "series": series,
        "loss": {"history": result.history, "best_epoch": result.best_epoch},
        "by_step": by_step,
        "coverage": coverage,
    }


# --- figures ---------------------------------------------------------------------------------------


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def forecast_figure(entry: dict[str, Any], targets: list[str]) -> bytes:
    """One series: recent history, actuals, forecast, seasonal naive and the shaded intervals."""
    fig, axes = plt.subplots(len(targets), 1, figsize=(8, 2.8 * len(targets)), squeeze=False)
    hist_t = np.arange(-len(entry["history"]), 0)
    steps = np.arange(len(entry["actual"]))
    for j, (ax, name) in enumerate(zip(axes[:, 0], targets, strict=True)):
        ax.plot(hist_t, np.asarray(entry["history"])[:, j], color="black", lw=1, label="history")
        for key, alpha in zip(
            sorted(entry["intervals"], key=float, reverse=True), (0.18, 0.32), strict=False
        ):
            lo, up = (np.asarray(b)[:, j] for b in entry["intervals"][key])
            ax.fill_between(steps, lo, up, color="tab:red", alpha=alpha, lw=0, label=f"{key} % interval")
        ax.plot(steps, np.asarray(entry["actual"])[:, j], color="black", lw=1.5, marker=".", label="actual")
        ax.plot(steps, np.asarray(entry["forecast"])[:, j], color="tab:red", lw=2, label="forecast")
        snaive = np.asarray(entry["seasonal_naive"])[:, j]
        ax.plot(steps, snaive, color="tab:blue", lw=1, ls="--", label="seasonal naive")
        ax.axvline(-0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(name)
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    first, last = entry["time"][0] if entry["time"] else "", entry["time"][-1] if entry["time"] else ""
    axes[0, 0].set_title(f"{entry['id']}: the latest test window, {first} to {last}")
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    return png(fig)


def step_figure(by_step: dict[str, list[float]]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3))
    for label, values in by_step.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
    ax.set_xlabel("horizon step")
    ax.set_ylabel("MASE on the test split")
    ax.set_title("Error by horizon step")
    ax.legend()
    return png(fig)


def coverage_figure(coverage: list[dict[str, float]]) -> bytes:
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    nominal = [c["level"] for c in coverage]
    ax.plot([0, 100], [0, 100], color="grey", ls=":", label="nominal")
    ax.plot(nominal, [c["observed"] for c in coverage], marker="o", color="tab:red", label="observed")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("interval level %")
    ax.set_ylabel("test points inside %")
    ax.set_title("Coverage by level")
    ax.legend()
    return png(fig)


# --- the page ----------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(head: list[str], rows: list[list[Any]], marked: int | None = None) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for r, row in enumerate(rows):
        cls = ' class="chosen"' if r == marked else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _candidates(manifest: Manifest, top: int = 15) -> str:
    sel = manifest.selection
    if sel is None:
        return "<p>A hand-written model (the config's <code>[model]</code> section): no candidates.</p>"
    shown = sel.candidates[:top]
    if not any(c.name == sel.chosen for c in shown):
        shown += [c for c in sel.candidates if c.name == sel.chosen]
    shown += [c for c in sel.candidates if c.name in ("naive",) or c.name.startswith("seasonal_naive[")]
    seen: set[str] = set()
    rows: list[list[Any]] = []
    marked: int | None = None
    for c in shown:
        if c.name in seen:
            continue
        seen.add(c.name)
        if c.name == sel.chosen:
            marked = len(rows)
        rows.append([c.name, c.kind, _num(c.score, 4), _num(c.history, 4) if c.history is not None else ""])
    below = (1 - sel.score / sel.baseline) * 100 if sel.baseline > 0 else float("nan")
    why = (
        f"Chosen: <b>{_e(sel.chosen)}</b>, validation MASE {sel.score:.4f} on {sel.windows} windows, "
        f"{below:.0f} % below the better of naive and seasonal naive ({sel.baseline:.4f})."
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in sel.notes)
    table = _table(["candidate", "kind", "validation MASE", "history MASE"], rows, marked)
    return (
        f"<p>{why}</p>{f'<ul>{notes}</ul>' if notes else ''}{table}"
        f"<p class=note>The best {top} of {len(sel.candidates)} candidates and the baselines; "
        "history: the fixed bases' MASE over every origin before the test split.</p>"
    )


def _metrics(manifest: Manifest) -> str:
    m = manifest.metrics
    if m is None:
        return "<p>Not scored.</p>"
    rows = [
        [name, _num(s.mae), _num(s.rmse), _num(s.smape, 2), _num(s.mase)]
        for name, s in (
            ("model", m.model),
            ("naive", m.naive),
            (f"seasonal naive (lag {m.season})", m.seasonal_naive),
        )
    ]
    return f"<p>{_e(m.split)}.</p>" + _table(["", "MAE", "RMSE", "sMAPE %", "MASE"], rows, 0)


def _forecasts(data: dict[str, Any]) -> str:
    series = data["series"]
    if not series:
        return "<p>No test windows.</p>"
    figures = []
    for n, entry in enumerate(series):
        hidden = "" if n == 0 else " hidden"
        figures.append(
            f'<figure class="series" data-series="{n}"{hidden}>'
            f'<img alt="forecast of {_e(entry["id"])}" src="{_uri(forecast_figure(entry, data["targets"]))}">'
            "</figure>"
        )
    options = "".join(f'<option value="{n}">{_e(e["id"])}</option>' for n, e in enumerate(series))
    total = data["series_total"]
    which = f"the {len(series)} largest of {total} series" if total > len(series) else f"{total} series"
    picker = (
        f'<label>Series ({_e(which)}): <select id="series">{options}</select></label>'
        if len(series) > 1
        else ""
    )
    return picker + "".join(figures)


def _coverage(data: dict[str, Any], manifest: Manifest) -> str:
    cal = manifest.intervals
    if cal is None or not data["coverage"]:
        return "<p>This model has no interval calibration.</p>"
    rows = [[f"{c['level']:g} %", f"{c['observed']:.1f} %"] for c in data["coverage"]]
    if cal.method == "quantile":
        made = (
            f"Bounds learned by the network with the pinball loss (levels {intervals.learned_levels(cal)} %)"
        )
    else:
        made = (
            f"Split-conformal intervals calibrated on {cal.errors} errors of {cal.windows} windows "
            f"before the test split (levels up to {cal.max_level:g} %)"
        )
    return (
        f"<p>{made}, scored on the {data['test_points']} test points.</p>"
        + _table(["level", "test points inside"], rows)
        + f'<img alt="coverage by level" src="{_uri(coverage_figure(data["coverage"]))}">'
    )


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #222;
  padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
td:nth-child(n+2) { font-variant-numeric: tabular-nums; }
tr.chosen { background: #fff3cd; font-weight: 600; }
img { max-width: 100%; } figure { margin: 0.5rem 0; } .note, .meta { color: #666; font-size: 13px; }
code { background: #f4f4f4; padding: 0 3px; }
"""
# Shows the chosen series; on load, records how many images decoded (a browser test reads it).
SCRIPT = """
const pick = document.getElementById("series");
if (pick) pick.addEventListener("change", () => {
  for (const f of document.querySelectorAll("figure.series")) f.hidden = f.dataset.series !== pick.value;
});
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.documentElement.dataset.images = ok + "/" + imgs.length;
});
"""


def _day(text: str | None) -> str:
    """The manifest's data bounds ('1956-01-01 00:00:00') without a midnight time."""
    return str(text).removesuffix(" 00:00:00").removesuffix("T00:00:00")


def render(manifest: Manifest, data: dict[str, Any]) -> str:
    """The whole page, from the manifest and ``collect``'s numbers."""
    loss = data["loss"]
    loss_png = loss_curve(loss["history"], loss["best_epoch"])
    d = manifest.data
    meta = (
        f"version {_e(manifest.version)} · created {manifest.created:%Y-%m-%d %H:%M} UTC · "
        f"{_e(manifest.spec.summary())}<br>data: {_e(d.source)}, {d.series} series, {d.rows} rows, "
        f"{_e(_day(d.start))} to {_e(_day(d.end))}"
    )
    sections = [
        ("The chosen model and its rivals", _candidates(manifest)),
        ("On the test split", _metrics(manifest)),
        ("The latest forecasts", _forecasts(data)),
        ("Error by horizon step", f'<img alt="error by step" src="{_uri(step_figure(data["by_step"]))}">'),
        ("Intervals: coverage by level", _coverage(data, manifest)),
        ("Training", f'<img alt="loss curves" src="{_uri(loss_png)}">'),
    ]
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(manifest.name)}: Seqcast report</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(manifest.name)}</h1><p class=meta>{meta}</p>{body}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def files(manifest: Manifest, data: dict[str, Any]) -> dict[str, bytes]:
    """The bundle's report files this module owns: the page and its numbers."""
    return {DATA: json.dumps(data).encode(), PAGE: render(manifest, data).encode()}


def rebuild(bundle: Path, out: Path | None = None) -> Path:
    """Render ``report/index.html`` of a published bundle again from its ``report/data.json`` and
    manifest; written atomically to ``out`` (default: the bundle's own page). Returns the path."""
    manifest = load_manifest(bundle)
    source = bundle / DATA
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing (a bundle from before the HTML report has none)")
    page = render(manifest, json.loads(source.read_text()))
    target = out or bundle / PAGE
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page)
    tmp.replace(target)
    return target
