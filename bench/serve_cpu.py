"""Worker CPU per request: what each server's own code costs, steadier than req/s.

Starts the hand-built reference and Seqcast side by side (the same gunicorn
config and settings as ``serve_bench.py``), drives each with the same wrk load
in turn, and divides the CPU time its workers used (user and system, from
``/proc/<pid>/stat``) by the requests they answered. On a shared machine
throughput moves with the neighbours; CPU time per request mostly does not.

    .venv/bin/python bench/serve_cpu.py                 # 1 series per request, 3 rounds x 8 s
    .venv/bin/python bench/serve_cpu.py --series 256 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from serve_bench import LUA, Server, build_bundle, request_body

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def workers_of(server: Server) -> list[int]:
    pid = server.proc.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1, help="series per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per server and round")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="seqcast-cpu-"))
    models = work / "models"
    models.mkdir()
    build_bundle(models)
    body = work / "body.json"
    body.write_bytes(request_body(args.series))
    lua = work / "post.lua"
    lua.write_text(LUA)
    env = {"SEQCAST_MODEL_DIR": str(models), "SEQCAST_WORKERS": str(args.workers), "SEQCAST_THREADS": "1"}
    servers = {
        "hand-built": (Server("bench.reference_app:create_app()", env, work / "ref.log"), "/forecast"),
        "Seqcast": (Server("service:create_app()", env, work / "seq.log"), "/v1/models/bench/forecast"),
    }
    per_request: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server, path in servers.values():
            server.wait(path, body.read_bytes())
        for rnd in range(1, args.rounds + 1):
            for name, (server, path) in servers.items():
                pids = workers_of(server)
                before = [cpu_seconds(p) for p in pids]
                out = subprocess.run(
                    ["wrk", "-t2", "-c8", f"-d{args.duration}s", "-s", str(lua), server.base + path],
                    env={**os.environ, "BODY_FILE": str(body)},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                after = [cpu_seconds(p) for p in pids]
                found = re.search(r"(\d+) requests in", out)
                if found is None or "Non-2xx" in out:
                    raise RuntimeError(f"wrk run failed:\n{out}")
                n = int(found.group(1))
                user = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
                system = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
                per_request[name].append((user + system) / n * 1e6)
                print(
                    f"round {rnd}: {name:10s} {n / args.duration:8.0f} req/s  worker CPU per request "
                    f"{(user + system) / n * 1e6:7.1f} us (user {user / n * 1e6:7.1f})",
                    flush=True,
                )
    finally:
        for server, _ in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    ref, ours = (statistics.median(per_request[k]) for k in ("hand-built", "Seqcast"))
    print(
        f"\nmedian worker CPU per request, {args.series} series: hand-built {ref:.1f} us, "
        f"Seqcast {ours:.1f} us, difference {ours - ref:+.1f} us ({ours / ref:.3f}x)"
    )


if __name__ == "__main__":
    main()
