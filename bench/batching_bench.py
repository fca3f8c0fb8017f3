"""Adaptive batching: Seqcast with and without it, and MLServer with its own, same models, same run.

    .venv/bin/python bench/batching_bench.py       # needs wrk and .venv-peers (MLServer), ~12 min

Two models, each exported once and served by everyone from the same ONNX file:
the serving benchmark's LSTM 2 x 64 (window 48, horizon 12) and a large one,
LSTM 2 x 256 with a week of half-hours as its window (336) and two days ahead
(96). Load: one-series requests from ``wrk`` at 64 and at 8 connections, for
``--duration`` seconds a phase, the servers' phases interleaved over
``--rounds`` rounds; the table shows medians of req/s and latency.

- Seqcast without batching: the usual layout (one sync worker per core).
- Seqcast with batching: one gthread worker per core with ``--threads``
  threads, ``SEQCAST_BATCH_MAX_SIZE=64``, ``SEQCAST_BATCH_MAX_DELAY_MS=0``.
- MLServer (``bench/peers/mlserver/runtime.py``, the graph in onnxruntime with
  one thread) with adaptive batching, ``max_batch_size`` 64 and
  ``max_batch_time`` 2 ms, one parallel worker per core. Install it apart
  (it pins its own stack): ``python3 -m venv .venv-peers &&
  .venv-peers/bin/pip install mlserver==1.6.1 onnxruntime "uvloop<0.21"``
  (MLServer 1.6 fails to start its workers with uvloop 0.21 and later).

Every server gets the same V2 JSON body (``POST /v2/models/<name>/infer``, the
input ``x`` as data, the output ``y`` asked by name); Seqcast's ``/v1`` body is
measured beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve_bench import LUA, Process, Server, free_port, series, wrk  # noqa: E402
from service.bundle import intervals, store  # noqa: E402
from service.bundle.manifest import DataInfo, Manifest  # noqa: E402
from service.settings import usable_cores  # noqa: E402

PEERS = ROOT / ".venv-peers" / "bin"
MODELS = {"small": (64, 48, 12), "large": (256, 336, 96)}  # hidden, window, horizon
MAX_SIZE, MLSERVER_DELAY_S = 64, 0.002


def build(model_dir: Path, name: str, hidden: int, window: int, horizon: int) -> Path:
    """An LSTM 2 x ``hidden`` with random weights, exported, parity-checked and published."""
    import torch

    from service.bundle.manifest import NetworkSpec
    from service.bundle.predictor import OnnxPredictor
    from training.export import check_parity, to_onnx
    from training.models import build_model, model_spec

    torch.manual_seed(0)
    cfg = NetworkSpec(cell="lstm", head="direct", hidden=hidden, layers=2, scaling="window")
    model = build_model(model_spec(cfg, ["value"], ["value"], window, horizon))
    x = series(32, window)[..., None]
    onnx_bytes = to_onnx(model, x)
    manifest = Manifest(
        name=name,
        version=f"lstm2x{hidden}-w{window}-h{horizon}",
        created=datetime.now(UTC),
        spec=model.spec.model_copy(update={"frequency": "30min"}),
        training_config={"model": cfg.model_dump()},
        data=DataInfo(fingerprint="0" * 64, source="random weights", series=1, rows=window),
        onnx_sha256=store.sha256_bytes(onnx_bytes),
    )
    predictor = OnnxPredictor.from_bytes(onnx_bytes, manifest.spec)
    check_parity(model, predictor, x, float(np.std(x)))
    forecast = predictor.predict(x)
    actual = forecast + np.random.default_rng(1).normal(0, 5, size=forecast.shape).astype(np.float32)
    manifest = manifest.model_copy(update={"intervals": intervals.calibrate(x, actual, forecast)})
    return store.publish(model_dir, manifest, onnx_bytes)


class MLServer(Process):
    """``mlserver start`` on a folder holding both models, with adaptive batching."""

    group_stop = True  # its parallel workers are processes of their own
    request_timeout = 5.0  # the first inference loads the model in every worker

    def __init__(self, work: Path, bundles: dict[str, Path], workers: int, log: Path) -> None:
        folder = work / "mlserver"
        folder.mkdir()
        port = free_port()
        shutil.copy(ROOT / "bench" / "peers" / "mlserver" / "runtime.py", folder / "runtime.py")
        settings = {
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "host": "127.0.0.1",
            "parallel_workers": workers,
            "debug": False,
            "metrics_endpoint": None,
        }
        (folder / "settings.json").write_text(json.dumps(settings))
        for name, bundle in bundles.items():
            (folder / name).mkdir()
            shutil.copy(bundle / "model.onnx", folder / name / "model.onnx")
            model = {
                "name": name,
                "implementation": "runtime.OnnxForecaster",
                "parameters": {"uri": str(folder / name / "model.onnx")},
                "max_batch_size": MAX_SIZE,
                "max_batch_time": MLSERVER_DELAY_S,
            }
            (folder / name / "model-settings.json").write_text(json.dumps(model))
        super().__init__([str(PEERS / "mlserver"), "start", str(folder)], folder, None, log, port)


def v2_body(window: int) -> bytes:
    """One series; the forecast ``y`` asked by name, as MLServer's runtime answers: with no output
    named the protocol returns every output the model lists, Seqcast's bounds too (4 more)."""
    x = series(1, window)[..., None]
    return json.dumps(
        {
            "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            "outputs": [{"name": "y"}],
        }
    ).encode()


def v1_body(window: int) -> bytes:
    return json.dumps({"series": [{"values": series(1, window)[0].astype(float).tolist()}]}).encode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=8, help="seconds per load phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=16, help="threads per Seqcast worker with batching")
    ap.add_argument("--connections", type=int, nargs="+", default=[64, 8])
    ap.add_argument("--no-mlserver", action="store_true", help="Seqcast alone (no .venv-peers)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    if not args.no_mlserver and not (PEERS / "mlserver").exists():
        sys.exit("MLServer not found in .venv-peers (see this file's docstring), or --no-mlserver")
    cores = usable_cores()
    work = Path(tempfile.mkdtemp(prefix="seqcast-batching-"))
    models = work / "models"
    models.mkdir()
    chosen = {name: MODELS[name] for name in args.models}
    bundles = {name: build(models, name, *shape) for name, shape in chosen.items()}
    lua = work / "post.lua"
    lua.write_text(LUA)
    bodies: dict[tuple[str, str], Path] = {}
    for name, (_, window, _) in chosen.items():
        for kind, make in (("v2", v2_body), ("v1", v1_body)):
            bodies[name, kind] = work / f"{name}-{kind}.json"
            bodies[name, kind].write_bytes(make(window))
    base = {"SEQCAST_MODEL_DIR": str(models), "SEQCAST_WORKERS": str(cores), "SEQCAST_REQUEST_LOG": "false"}
    plain = Server("service:create_app()", base | {"SEQCAST_THREADS": "1"}, work / "plain.log")
    batched_env = base | {
        "SEQCAST_THREADS": str(args.threads),
        "SEQCAST_BATCH_MAX_SIZE": str(MAX_SIZE),
        "SEQCAST_BATCH_MAX_DELAY_MS": "0",
    }
    batched = Server("service:create_app()", batched_env, work / "batched.log")
    servers: dict[str, Process] = {"Seqcast": plain, "Seqcast, batching": batched}
    mlserver = None
    if not args.no_mlserver:
        mlserver = MLServer(work, bundles, cores, work / "mlserver.log")
        servers["MLServer, batching"] = mlserver
    phases: list[tuple[str, str, int, str, str]] = []  # (model, server, connections, url, body kind)
    for name in chosen:
        for c in args.connections:
            for label, server in servers.items():
                phases.append((name, label, c, f"{server.base}/v2/models/{name}/infer", "v2"))
            for label in ("Seqcast", "Seqcast, batching"):
                url = f"{servers[label].base}/v1/models/{name}/forecast"
                phases.append((name, f"{label} (/v1)", c, url, "v1"))
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {p[:3]: [] for p in phases}
    started = datetime.now(UTC)
    try:
        plain.wait("/readyz")
        batched.wait("/readyz")
        if mlserver is not None:
            for name in chosen:
                mlserver.wait(f"/v2/models/{name}/infer", bodies[name, "v2"].read_bytes(), timeout=120)
        for model, _, c, url, kind in phases:  # warm-up, discarded
            wrk(url, 2, c, bodies[model, kind], lua)
        for r in range(args.rounds):
            for model, label, c, url, kind in phases if r % 2 == 0 else phases[::-1]:
                results[model, label, c].append(wrk(url, args.duration, c, bodies[model, kind], lua))
                print(f"round {r + 1}: {model} {label} c{c}: {results[model, label, c][-1]}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print(report(results, args, started, cores, list(chosen)))
    return 0


def report(results: dict, args: argparse.Namespace, started: datetime, cores: int, names: list[str]) -> str:
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}

    def ratio(model: str, a: str, b: str, c: int) -> float:
        pairs = zip(results[model, a, c], results[model, b, c], strict=True)
        return statistics.median(x["rps"] / y["rps"] for x, y in pairs)

    lines = [
        f"bench/batching_bench.py, {started:%Y-%m-%d %H:%M} UTC, {cores} cores, {args.rounds} rounds x "
        f"{args.duration} s per phase, one-series requests (medians of rounds):",
        "",
        "| model | server | connections | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (model, label, c), m in med.items():
        lines.append(f"| {model} | {label} | {c} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    lines += [
        "",
        f"| ratio (median of per-round ratios) | {' | '.join(names)} | goal |",
        "|---|" + "---:|" * len(names) + "---|",
    ]
    have = {label for _, label, _ in results}
    ml = (
        "Seqcast batching / MLServer batching, V2, 64 connections",
        "Seqcast, batching",
        "MLServer, batching",
    )
    rows = [(*ml, 64, ">= 2")] if "MLServer, batching" in have else []
    without = "Seqcast batching / without, V2, 64 connections"
    rows.append((without, "Seqcast, batching", "Seqcast", 64, ">= 2 (large), >= 0.95 (small)"))
    v1 = "Seqcast batching / without, /v1, 64 connections"
    rows.append((v1, "Seqcast, batching (/v1)", "Seqcast (/v1)", 64, ""))
    for text, a, b, c, goal in rows:
        if (names[0], a, c) in results:
            cells = [f"{ratio(model, a, b, c):.2f}" for model in names]
            lines.append(f"| {text} | {' | '.join(cells)} | {goal} |")
    if 8 in args.connections:
        p99 = [med[m, "Seqcast, batching", 8]["p99_ms"] / med[m, "Seqcast", 8]["p99_ms"] for m in names]
        cells = " | ".join(f"{v:.2f}" for v in p99)
        lines.append(f"| p99 at 8 connections, batching / without, V2 | {cells} | <= 1.2 |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
