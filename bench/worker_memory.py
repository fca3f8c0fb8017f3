"""Worker memory after large forecast requests, with and without the arena shrink (issue 13).

    .venv/bin/python bench/worker_memory.py              # about a minute

One gunicorn worker (the repo's config) serves serve_bench's fixed model
(LSTM 2 x 64, window 48, horizon 12). For ``SEQCAST_ARENA_SHRINK_BATCH`` 0
(never shrink: onnxruntime keeps what a run grew its arena by) and the default
256, interleaved over ``--rounds`` fresh servers, it records the worker's RSS
after boot, after three 256-series requests, and after three 1,024-series
requests (history of the window's length, and of 300 values: a 6 MB body),
and the median time of the 1,024-series requests. Goal: RSS <= 130 MiB after
a 1,024-series request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from serve_bench import NAME, WINDOW, Server, build_bundle, series  # noqa: E402


def body(n: int, length: int) -> bytes:
    rows = series(n, length).astype(float)
    return json.dumps({"series": [{"values": row.tolist()} for row in rows]}).encode()


def post(base: str, data: bytes) -> float:
    req = urllib.request.Request(
        f"{base}/v1/models/{NAME}/forecast", data=data, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as answer:
        answer.read()
        assert answer.status == 200
    return time.perf_counter() - started


def measure(model_dir: Path, shrink: int, log: Path) -> dict[str, float]:
    env = {
        "SEQCAST_MODEL_DIR": str(model_dir),
        "SEQCAST_WORKERS": "1",
        "SEQCAST_ARENA_SHRINK_BATCH": str(shrink),
        "SEQCAST_REQUEST_LOG": "false",
    }
    server = Server("service:create_app()", env, log)
    try:
        server.wait("/readyz")
        out = {"boot": server.worker_rss_mib()[0]}
        small = body(256, WINDOW)
        for _ in range(3):
            post(server.base, small)
        out["after 256"] = server.worker_rss_mib()[0]
        for label, length in (("window", WINDOW), ("300 values", 300)):
            data = body(1024, length)
            seconds = [post(server.base, data) for _ in range(3)]
            out[f"after 1,024 ({label})"] = server.worker_rss_mib()[0]
            out[f"1,024 ({label}) ms"] = 1000 * statistics.median(seconds)
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "models"
        build_bundle(model_dir)
        runs: dict[int, list[dict[str, float]]] = {0: [], 256: []}
        for _ in range(args.rounds):
            for shrink in runs:
                runs[shrink].append(measure(model_dir, shrink, Path(tmp) / "gunicorn.log"))
    keys = list(runs[0][0])
    print("| SEQCAST_ARENA_SHRINK_BATCH | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for shrink, results in runs.items():
        cells = [f"{statistics.median(r[k] for r in results):.1f}" for k in keys]
        print(f"| {shrink} | " + " | ".join(cells) + " |")
    print(f"(medians of {args.rounds} fresh servers each; RSS in MiB)")


if __name__ == "__main__":
    main()
