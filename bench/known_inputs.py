"""Inputs known in advance, measured: elecdaily and elecdemand with and without them (issue 15).

    PYTHONPATH=$PWD .venv-bench/bin/python bench/known_inputs.py --update-doc docs/accuracy.md

Both sets are Victoria's electricity demand with a workday flag and the
temperature, known for the forecast days (the temperature as observed: a
perfect weather forecast, the same for every method). The accuracy protocol
(``bench/protocol.py``): one origin, the last ``h`` points held out, MASE at
the set's season. Each set is forecast by

- Seqcast's automatic recipe with the target alone (the accuracy benchmark's
  run), with the future columns ``WorkDay`` and ``Temperature``
  (``data.future``), and with them and the calendar (``data.calendar =
  "auto"``, holidays of ``AU-VIC``); seeds 0..2 where the recipe trains
  networks (elecdemand's window is too long for them: one seed, the linear
  recipe is seed-free);
- statsforecast's AutoARIMA without and with the same two regressors (its
  ``X_df``: regression with ARIMA errors) on the same in-sample points (the
  last ``anchor_tail`` for elecdemand, with ``approximation=True``, as in the
  accuracy benchmark), and the seasonal naive.

One test origin is 14 days (elecdaily's is Christmas week, whose drop no
input announces), so elecdaily is also scored at ``--origins`` earlier
origins: the file cut ``k * h`` days short, its last ``h`` days held out,
every method trained again (data before the test split only). The choices
are made on validation windows only; each test is scored once.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import tables  # noqa: E402
from bench.protocol import BY_NAME, DataSet, load, mase, seasonal_naive  # noqa: E402

DOC_START, DOC_END = "<!-- known-inputs:start -->", "<!-- known-inputs:end -->"
DATA = Path("/work/shared/datasets")
REGRESSORS = ["WorkDay", "Temperature"]
VARIANTS: dict[str, dict] = {
    "target alone": {},
    "future WorkDay, Temperature": {"future": REGRESSORS},
    "future and calendar": {"future": REGRESSORS, "calendar": "auto", "holidays": "AU-VIC"},
}
FREQ = {"elecdaily": "D", "elecdemand": "30min"}


def arima(s: DataSet, frame: pd.DataFrame, regressors: list[str]) -> np.ndarray:
    """statsforecast's AutoARIMA forecast of the last ``s.h`` points, with ``regressors`` as X."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA

    df = frame.rename(columns={"timestamp": "ds", "Demand": "y"}).assign(unique_id="s")
    df["ds"] = pd.to_datetime(df["ds"])
    train, test = df.iloc[: -s.h], df.iloc[-s.h :]
    if s.anchor_tail is not None:
        train = train.iloc[-s.anchor_tail :]
    model = AutoARIMA(season_length=s.season, approximation=s.approximate_arima)
    sf = StatsForecast(models=[model], freq=FREQ[s.name])
    x_df = test[["unique_id", "ds", *regressors]] if regressors else None
    out = sf.forecast(df=train[["unique_id", "ds", "y", *regressors]], h=s.h, X_df=x_df)
    return out["AutoARIMA"].to_numpy(np.float64)


def score(s: DataSet, frame: pd.DataFrame, root: Path, seeds: list[int]) -> dict[str, list[float]]:
    """Method -> MASE per seed of every method on ``frame``'s last ``s.h`` points (written to
    ``root`` for the trainer)."""
    from bench.seqcast_runner import seqcast_forecast

    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / s.file, index=False)
    series, _ = load(s, root)
    insample, test = series[0].split(s.h)
    out = {"seasonal naive": [mase(insample, test, seasonal_naive(insample, s.h, s.season), s.season)]}
    for label, regressors in (("AutoARIMA", []), ("AutoARIMA with WorkDay, Temperature", REGRESSORS)):
        out[label] = [mase(insample, test, arima(s, frame, regressors), s.season)]
    for label, options in VARIANTS.items():
        out[f"Seqcast, {label}"] = scores = []
        for seed in seeds:
            result = seqcast_forecast(s, series, root, seed, threads=None, data_options=options)
            scores.append(mase(insample, test, result.forecast[0], s.season))
            logging.info(
                "%s, %s, seed %d: MASE %.3f (%s)", s.name, label, seed, scores[-1], result.chosen[-60:]
            )
    return out


def run(name: str, seeds: list[int], origins: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The protocol's test origin (per seed), and the mean over ``origins`` earlier ones (the set
    cut ``k * h`` points short, k = 1..origins; seed 0): data before the test split only."""
    s = BY_NAME[name]
    frame = pd.read_csv(DATA / s.file)
    work = Path(tempfile.mkdtemp(prefix=f"seqcast-known-{name}-"))
    test = score(s, frame, work / "test", seeds)
    earlier: dict[str, list[float]] = {}
    for k in range(1, origins + 1):
        for method, values in score(s, frame.iloc[: len(frame) - k * s.h], work / f"k{k}", seeds[:1]).items():
            earlier.setdefault(method, []).append(values[0])
        logging.info("%s: origin %d of %d done", name, k, origins)
    shutil.rmtree(work, ignore_errors=True)
    return test, earlier


ANCHOR = "AutoARIMA with WorkDay, Temperature"


def table(
    results: dict[str, tuple[dict[str, list[float]], dict[str, list[float]]]], origins: dict[str, int]
) -> str:
    """The MASE table; for the earlier origins also each method's wins against AutoARIMA with the
    same regressors, origin by origin (a mean can hide one origin's large miss or win)."""
    lines = [
        "| set | method | test origin: MASE (mean over seeds) | seeds | earlier origins: mean MASE "
        f"| earlier origins: better than {ANCHOR} |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name, (test, earlier) in results.items():
        anchor = earlier.get(ANCHOR)
        for method, scores in test.items():
            each = " ".join(f"{v:.3f}" for v in scores)
            mine = earlier.get(method)
            before = f"{np.mean(mine):.3f} ({origins[name]})" if mine else ""
            wins = ""
            if mine and anchor and method != ANCHOR:
                wins = f"{sum(a < b for a, b in zip(mine, anchor, strict=True))} of {len(mine)}"
            lines.append(f"| {name} | {method} | {np.mean(scores):.3f} | {each} | {before} | {wins} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["elecdaily", "elecdemand"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--origins", type=int, default=8, help="earlier origins of elecdaily (elecdemand: none, an hour each)"
    )
    ap.add_argument("--update-doc", type=Path, help="replace the text between the known-inputs markers")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("seqcast", "bench.seqcast"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started, t0 = datetime.now(UTC), time.perf_counter()
    # elecdemand's window is too long for the recipe's networks: its choice is the same for any seed
    origins = {name: args.origins if name == "elecdaily" else 0 for name in args.sets}
    results = {
        name: run(name, args.seeds if name != "elecdemand" else args.seeds[:1], origins[name])
        for name in args.sets
    }
    command = "bench/known_inputs.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (
        f"`{command.strip()}`, {started:%Y-%m-%d %H:%M} UTC, {(time.perf_counter() - t0) / 60:.1f} min. "
        "MASE at the set's season of the last h points (the test origin), and its mean over earlier "
        "origins (the set cut k h points short, k = 1, 2, ...; seed 0):\n\n" + table(results, origins)
    )
    print(text)
    if args.update_doc:
        tables.update_doc(args.update_doc, text, DOC_START, DOC_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
