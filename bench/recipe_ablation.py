"""What each part of the default recipe is worth: the recipe with one part changed, on the
accuracy benchmark's sets and protocol (test MASE, one origin), beside the recipe as shipped.

    PYTHONPATH=$PWD .venv/bin/python bench/recipe_ablation.py                       # every variant
    PYTHONPATH=$PWD .venv/bin/python bench/recipe_ablation.py --only gas elecequip --seeds 0 1

Variants (``VARIANTS``): ``shipped``; ``linear`` (no network candidates); ``full-network`` (a
winning network published with its whole correction, not averaged with its base). It needs no
statsforecast: the anchors are bench/accuracy.py's. The test points decide nothing here; the
table shows what a choice made on validation windows did on them, over the whole collection.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import tables  # noqa: E402
from bench.protocol import SETS, gmean, load, score_set  # noqa: E402
from bench.seqcast_runner import seqcast_forecast  # noqa: E402


@contextmanager
def _patched(**values: object) -> Iterator[None]:
    from training import recipe

    old = {k: getattr(recipe, k) for k in values}
    for k, v in values.items():
        setattr(recipe, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(recipe, k, v)


DOC_START, DOC_END = "<!-- ablation:start -->", "<!-- ablation:end -->"
VARIANTS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "shipped": lambda: _patched(),
    "linear": lambda: _patched(NETWORK_CELLS=()),
    "full-network": lambda: _patched(NETWORK_SHARE=1.0),
}
# The single-series sets a network can change (the panels and half-hourly sets take minutes each).
DEFAULT_SETS = (
    "airline co2_monthly nottem h02 elecequip debitcards gas UKDriverDeaths sunspot_month qcement "
    "hyndsight elecdaily uschange arrivals visnights lynx Nile LakeHuron goog BJsales"
).split()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=DEFAULT_SETS, metavar="NAME")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--update-doc", type=Path, help="replace the text between the ablation markers")
    args = ap.parse_args(argv)
    sets = [s for s in SETS if s.name in args.only]
    table: dict[str, dict[str, float]] = {}
    for s in sets:
        series, _skipped = load(s, args.data)
        for variant in args.variants:
            scores = []
            for seed in args.seeds:
                with VARIANTS[variant]():
                    r = seqcast_forecast(s, series, args.data, seed)
                scores.append(score_set(series, r.forecast, s).mase)
            table.setdefault(s.name, {})[variant] = float(np.median(scores))
            score = table[s.name][variant]
            print(f"{s.name:16s} {variant:13s} MASE {score:.3f}  {r.chosen[:70]}", flush=True)
    lines = tables._head(["set", *args.variants])
    lines += [tables._row([name, *(f"{row[v]:.3f}" for v in args.variants)]) for name, row in table.items()]
    total = {v: gmean([row[v] for row in table.values()]) for v in args.variants}
    lines.append(tables._row(["**geometric mean**", *(f"**{total[v]:.3f}**" for v in args.variants)]))
    shown = " ".join(["bench/recipe_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([f"Test MASE, median over seeds {args.seeds}; `{shown}`, {when}.", "", *lines])
    print("\n" + text)
    if args.update_doc:
        tables.update_doc(args.update_doc, text, DOC_START, DOC_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
