"""Worker layouts for adaptive batching: which way of running requests side by side in one
worker loses least against the sync worker on a small model.

    .venv/bin/python bench/worker_layouts.py     # wrk; about 6 minutes (gevent layouts: pip install gevent)

Batching needs several requests in flight in one worker. On a small model (the
serving benchmark's LSTM 2 x 64, window 48) the shipped layout, gthread with
batching, answers fewer one-series requests than one sync worker per core
(docs/benchmarks.md, "Adaptive batching"). This measures the other ways to
have requests side by side in a worker, same model, same run, interleaved:

- ``sync``: the reference, one request at a time per worker, no batching;
- ``gthread N, batching``: what Seqcast ships (``SEQCAST_THREADS=N``);
- ``threaded sync 16, batching``: :class:`SyncLoopsWorker` below, sync
  loops in 16 threads of one process, one accepting at a time: no poller and
  no hand-over between threads, so what is left is the threads themselves;
- ``gevent``, ``gevent, batching``: gunicorn's gevent worker (greenlets, one
  OS thread), the batching leader waiting 0.2 ms so greenlets can join.
  Skipped unless gevent is installed in .venv; not a Seqcast dependency.

Not shipped: this file exists so the numbers in docs/benchmarks.md can be
measured again. ``--model large`` runs the LSTM 2 x 256 of batching_bench.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import select
import statistics
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.batching_bench import MAX_SIZE, MODELS, build, v2_body  # noqa: E402
from bench.serve_bench import LUA, Server, wrk  # noqa: E402
from service.workers import _EMPTY, SyncWorker  # noqa: E402


class SyncLoopsWorker(SyncWorker):
    """``threads`` sync loops in one process; a lock lets one thread at a time wait to accept,
    so a new connection wakes one thread, not all of them. Each connection is one request, as
    with the sync worker. (Its name must not end in "SyncWorker": gunicorn swaps such a class
    for gthread when threads > 1.)"""

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        self._accepting = threading.Lock()
        extra = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.cfg.threads - 1)]
        for thread in extra:
            thread.start()
        self._loop()
        for thread in extra:
            thread.join()

    def _loop(self) -> None:
        while self.alive:
            self.notify()
            with self._accepting:
                got = self._accept_one()
            if got is not None:
                listener, client, addr = got
                client.setblocking(True)
                self.handle(listener, client, addr)

    def _accept_one(self):  # type: ignore[no-untyped-def]
        while self.alive:
            for listener in self.sockets:
                try:
                    client, addr = listener.accept()
                except OSError as exc:
                    if exc.errno in _EMPTY:
                        continue
                    raise
                return listener, client, addr
            select.select(self.sockets, [], [], 1.0)
            self.notify()
            if not self.is_parent_alive():
                self.alive = False
        return None


def fair_gevent_worker() -> type:
    """gunicorn's gevent worker that yields to the other greenlets after each request: a
    keep-alive connection whose next request is already buffered is otherwise served again at
    once, and a CPU-bound app never yields, so the other connections wait."""
    import gevent
    from gunicorn.workers.ggevent import GeventWorker

    class FairGeventWorker(GeventWorker):  # type: ignore[misc]
        def handle_request(self, listener_name, req, sock, addr):  # type: ignore[no-untyped-def]
            try:
                return super().handle_request(listener_name, req, sock, addr)
            finally:
                gevent.sleep(0)

    return FairGeventWorker


GEVENT = importlib.util.find_spec("gevent") is not None
if GEVENT:
    FairGeventWorker = fair_gevent_worker()


def layouts(threads: list[int]) -> dict[str, tuple[dict[str, str], str]]:
    """label -> (SEQCAST_* settings, gunicorn arguments)."""
    batching = {"SEQCAST_BATCH_MAX_SIZE": str(MAX_SIZE)}
    out: dict[str, tuple[dict[str, str], str]] = {"sync": ({"SEQCAST_THREADS": "1"}, "")}
    for n in threads:
        out[f"gthread {n}, batching"] = (batching | {"SEQCAST_THREADS": str(n)}, "")
    out["threaded sync 16, batching"] = (
        batching | {"SEQCAST_THREADS": "16"},
        "-k bench.worker_layouts.SyncLoopsWorker",
    )
    if GEVENT:
        threads = {"SEQCAST_THREADS": "16"}  # only so that batching validates: greenlets, not threads
        for label, worker in (
            ("gevent", "gevent"),
            ("gevent, yielding", "bench.worker_layouts.FairGeventWorker"),
        ):
            args = f"-k {worker} --worker-connections 1000"
            out[label] = (threads, args)
            out[f"{label}, batching"] = (batching | threads | {"SEQCAST_BATCH_MAX_DELAY_MS": "0.2"}, args)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=list(MODELS), default="small")
    ap.add_argument("--duration", type=int, default=5, help="seconds per load phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, nargs="+", default=[64, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[16, 4], help="gthread layouts to measure")
    ap.add_argument("--only", action="append", help="measure this layout (and sync); repeatable")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="seqcast-layouts-"))
    models = work / "models"
    models.mkdir()
    hidden, window, horizon = MODELS[args.model]
    build(models, args.model, hidden, window, horizon)
    lua = work / "post.lua"
    lua.write_text(LUA)
    body = work / "body.json"
    body.write_bytes(v2_body(window))
    base = {"SEQCAST_MODEL_DIR": str(models), "SEQCAST_WORKERS": "2", "SEQCAST_REQUEST_LOG": "false"}
    servers: dict[str, Server] = {}
    every = layouts(args.threads)
    unknown = set(args.only or ()) - set(every)
    if unknown:
        ap.error(f"--only: no layout {sorted(unknown)}; there are {sorted(every)}")
    chosen = {k: v for k, v in every.items() if not args.only or k in args.only or k == "sync"}
    for label, (env, gunicorn_args) in chosen.items():
        os.environ["GUNICORN_CMD_ARGS"] = gunicorn_args  # gunicorn reads it; command line beats the file
        servers[label] = Server("service:create_app()", base | env, work / f"{label}.log")
    os.environ.pop("GUNICORN_CMD_ARGS", None)
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    started = datetime.now(UTC)
    try:
        for label, server in servers.items():
            server.wait("/readyz")
            asked = chosen[label][1].split()[1] if chosen[label][1] else ""
            used = _worker_class(work / f"{label}.log")
            if asked and asked.rsplit(".", 1)[-1] not in used:  # gunicorn may swap a class
                raise SystemExit(f"{label}: gunicorn runs {used}, not {asked}")
            print(f"{label}: {used}", flush=True)
        url = {label: f"{s.base}/v2/models/{args.model}/infer" for label, s in servers.items()}
        for label in servers:  # warm-up, discarded
            wrk(url[label], 2, 8, body, lua, errors_ok=True)
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(servers)[::-1]
            for c in args.connections:
                for label in order:
                    out = wrk(url[label], args.duration, c, body, lua, errors_ok=True)
                    results.setdefault((c, label), []).append(out)
                    print(f"round {r + 1}: c{c} {label}: {out}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print(report(results, args, started))
    return 0


def _worker_class(log: Path) -> str:
    """The worker class gunicorn says it uses ("Using worker: ...") in a server's log."""
    for line in log.read_text().splitlines():
        if "Using worker:" in line:
            return line.split("Using worker:", 1)[1].strip()
    return "unknown"


def report(
    results: dict[tuple[int, str], list[dict[str, float]]], args: argparse.Namespace, started: datetime
) -> str:
    lines = [
        f"bench/worker_layouts.py --model {args.model}, {started:%Y-%m-%d %H:%M} UTC, 2 workers, "
        f"{args.rounds} rounds x {args.duration} s, one-series V2 requests (medians of rounds; "
        "ratio: median of per-round req/s ratios to sync; errors: wrk's socket errors and "
        "timeouts, summed over rounds):",
        "",
        "| layout | connections | req/s | / sync | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (c, label), runs in results.items():
        sync = results[c, "sync"]
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(runs, sync, strict=True))
        med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
        errors = sum(r["errors"] for r in runs)
        lines.append(
            f"| {label} | {c} | {med['rps']:,.0f} | {ratio:.2f} | {med['p50_ms']:.2f} | "
            f"{med['p99_ms']:.2f} | {errors:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
