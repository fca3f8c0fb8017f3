"""What inputs known in advance cost a forecast, in-process: no HTTP, no load generator.

serve_bench.py's two bundles, the same LSTM 2 x 64 reading a temperature as an input known in
advance with the hour and weekday of each step (``bench-known``) and as a covariate of the past
(``bench-covariate``), asked with the same dates. Two measurements:

- whole requests through the Flask test client, the two models interleaved (a, b, b, a, ...), the
  median of the per-pair ratios: machine load hits both alike;
- the request's stages (JSON parse, validation, ``prepare``, the model call, the answer), each the
  minimum of 15 ``timeit`` repeats, to say which part of the difference is the service's and
  which the wider graph's.

    .venv/bin/python bench/known_cost.py            # about a minute
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import serve_bench as sb  # noqa: E402
from service import forecast  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

MODELS = {True: sb.KNOWN_NAME, False: sb.COVARIATE_NAME}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=60, help="interleaved pairs of request runs per size")
    args = p.parse_args(argv)
    models = Path(tempfile.mkdtemp(prefix="seqcast-known-cost-"))
    sb.build_known_bundle(models)
    sb.build_known_bundle(models, known=False)
    app = create_app(Settings(model_dir=models, log_level="WARNING"))
    client = app.test_client()
    logging.disable(logging.CRITICAL)
    registry = app.extensions["seqcast"].registry

    print("| series | known ms | covariate (dated alike) ms | known / covariate, median of pairs |")
    print("|---:|---:|---:|---:|")
    for n, inner in ((1, 20), (sb.BATCH, 2)):
        bodies = {k: sb.known_request_body(n, k, dated=True) for k in MODELS}

        def run(known: bool, n: int = n, inner: int = inner, bodies: dict = bodies) -> float:
            url = f"/v1/models/{MODELS[known]}/forecast"
            t0 = time.perf_counter()
            for _ in range(inner):
                answer = client.post(url, data=bodies[known], content_type="application/json")
            assert answer.status_code == 200, answer.get_data(as_text=True)
            return (time.perf_counter() - t0) / inner * 1e3

        run(True), run(False)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        ratios = []
        for i in range(args.pairs):
            got = {k: run(k) for k in ((True, False) if i % 2 else (False, True))}
            for k, ms in got.items():
                times[k].append(ms)
            ratios.append(got[True] / got[False])
        med = statistics.median
        print(f"| {n} | {med(times[True]):.3f} | {med(times[False]):.3f} | {med(ratios):.3f} |")

    print(f"\nstages at {sb.BATCH} series, ms (min of 15 repeats):\n")
    print("| stage | known | covariate (dated alike) | difference |")
    print("|---|---:|---:|---:|")
    stages: dict[bool, dict[str, float]] = {}
    for known, name in MODELS.items():
        body = sb.known_request_body(sb.BATCH, known, dated=True)
        served = registry.get(name)
        manifest, spec = served.manifest, served.manifest.spec
        raw = orjson.loads(body)
        req = forecast.parse_request(raw, spec, 10_000)
        horizon = forecast.check_options(req, manifest)
        batch = forecast.prepare(req, manifest, horizon)
        y, _ = forecast.predict(served.predictor, batch, False)
        parts = {
            "JSON parse": lambda body=body: orjson.loads(body),
            "validation": lambda raw=raw, spec=spec: forecast.parse_request(raw, spec, 10_000),
            "prepare (values, dates, future, calendar, graph input)": lambda req=req, m=manifest, h=horizon: (
                forecast.prepare(req, m, h)
            ),
            "model call": lambda p=served.predictor, b=batch: forecast.predict(p, b, False),
            "answer": lambda m=manifest, req=req, b=batch, y=y: forecast.answer(m, req, b, y, None),
        }
        stages[known] = {k: min(timeit.repeat(f, number=3, repeat=15)) / 3 * 1e3 for k, f in parts.items()}
    for stage in stages[True]:
        a, b = stages[True][stage], stages[False][stage]
        print(f"| {stage} | {a:.3f} | {b:.3f} | {a - b:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
