"""Serving benchmark: Seqcast against a hand-built endpoint and bare onnxruntime, same gunicorn settings.

    .venv/bin/python bench/serve_bench.py                  # 3 rounds x 10 s per phase (~8 min)
    .venv/bin/python bench/serve_bench.py --rounds 1 --duration 5

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). Everything runs on
127.0.0.1: two gunicorn servers with the repo's config and the same settings
(workers = usable cores, one thread, one onnxruntime thread per session):

- ``bench/reference_app.py``: ``GET /ping`` (a constant: the framework floor)
  and a hand-built pydantic + onnxruntime ``POST /forecast``;
- Seqcast: ``GET /healthz`` (the floor with Seqcast's hooks) and
  ``POST /v1/models/bench/forecast`` with one series and with 256, each
  without and with ``"levels": [80, 95]`` (the bundle carries an interval
  calibration, as every trained one does).

The model is fixed: LSTM 2 layers x 64, window 48, horizon 12, one feature,
random weights (speed does not depend on them). Phases of the two servers are
interleaved and repeated, and the table shows medians, so a burst of load from
something else on the machine hits both sides alike. Ratios:

- single: Seqcast req/s / (1 / (1/floor + ORT time per call / cores)), goal >= 0.9;
- Seqcast / hand-built req/s, goal >= 0.95;
- intervals: req/s with levels 80 and 95 / without, goal >= 0.91 (a forecast
  with intervals costs at most 1.1 times one without);
- known inputs: req/s of the same network reading a temperature known in
  advance and the hour and weekday of each step (``bench-known``: requests
  dated, with the future temperatures) / reading it as a covariate of the
  past (``bench-covariate``: the same rows, undated), goal >= 0.91;
- batch: Seqcast series/s / bare onnxruntime series/s on the same batch, in as
  many processes as workers, each with the same intra-op threads, goal >= 0.9;
- worker RSS with the model loaded (goal <= 130 MiB), cold start to the first
  forecast (goal <= 1 s), and the installed size of the serve and train extras.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.bundle import intervals, store  # noqa: E402
from service.bundle.manifest import DataInfo, Manifest  # noqa: E402
from service.settings import usable_cores  # noqa: E402

NAME, WINDOW, HORIZON, BATCH = "bench", 48, 12, 256
LEVELS = [80.0, 95.0]  # the intervals asked in the phases "with levels"
GUNICORN = Path(sys.executable).parent / "gunicorn"
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local header = os.getenv("HEADER_LENGTH")  -- set for V2 binary bodies: JSON header, then raw tensor bytes
if header and header ~= "" then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header
end
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
"""


# -- the model -----------------------------------------------------------------


def build_bundle(model_dir: Path) -> Path:
    """Publish the fixed benchmark model (random weights, exported and parity-checked like any bundle)."""
    import torch

    from service.bundle.manifest import NetworkSpec
    from service.bundle.predictor import OnnxPredictor
    from training.export import check_parity, to_onnx
    from training.models import build_model, model_spec

    torch.manual_seed(0)
    cfg = NetworkSpec(cell="lstm", head="direct", hidden=64, layers=2, scaling="window")
    model = build_model(model_spec(cfg, ["value"], ["value"], WINDOW, HORIZON))
    x = series(64, WINDOW)[..., None]
    onnx_bytes = to_onnx(model, x)
    manifest = Manifest(
        name=NAME,
        version="lstm2x64-w48-h12",
        created=datetime.now(UTC),
        spec=model.spec.model_copy(update={"frequency": "h"}),
        training_config={"model": cfg.model_dump()},
        data=DataInfo(fingerprint="0" * 64, source="random weights", series=1, rows=WINDOW),
        onnx_sha256=store.sha256_bytes(onnx_bytes),
    )
    predictor = OnnxPredictor.from_bytes(onnx_bytes, manifest.spec)
    check_parity(model, predictor, x, float(np.std(x)))
    # An interval calibration like a trained bundle's: the forecasts missed by noise of the series' scale.
    forecast = predictor.predict(x)
    actual = forecast + np.random.default_rng(1).normal(0, 5, size=forecast.shape).astype(np.float32)
    manifest = manifest.model_copy(update={"intervals": intervals.calibrate(x, actual, forecast)})
    return store.publish(model_dir, manifest, onnx_bytes)


KNOWN_NAME, COVARIATE_NAME = "bench-known", "bench-covariate"
KNOWN_FUTURE, KNOWN_CALENDAR = ["temp"], ["hour", "dayofweek"]  # spec.known of bench-known
START = "2024-03-04T00:00:00"  # the first value's time in the dated requests (hourly)


def build_known_bundle(model_dir: Path, known: bool = True) -> Path:
    """The same network reading a temperature beside the series: ``known``, as an input known in
    advance (a forecast of it), with the hour and weekday of each step, so requests send its
    future values and dates (``bench-known``); else as a covariate of the past only
    (``bench-covariate``), the same request without them."""
    import torch

    from service.bundle.manifest import Known, NetworkSpec
    from service.bundle.predictor import OnnxPredictor
    from training.export import check_parity, to_onnx
    from training.models import build_model, model_spec

    torch.manual_seed(0)
    cfg = NetworkSpec(cell="lstm", head="direct", hidden=64, layers=2, scaling="window")
    spec = model_spec(
        cfg,
        ["value", "temp"],
        ["value"],
        WINDOW,
        HORIZON,
        "h",
        known=Known(future=KNOWN_FUTURE, calendar=KNOWN_CALENDAR) if known else None,
    )
    n = len(spec.features)
    temps = [1, 6] if known else [1]  # the temperature, as sent and read ahead
    mean, std = np.zeros(n, np.float32), np.ones(n, np.float32)
    mean[temps], std[temps] = 15.0, 5.0
    model = build_model(spec, mean, std)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, WINDOW, n)).astype(np.float32)
    x[..., 0] = series(64, WINDOW)
    x[..., temps] = 15 + 5 * x[..., temps]
    onnx_bytes = to_onnx(model, x)
    manifest = Manifest(
        name=KNOWN_NAME if known else COVARIATE_NAME,
        version="lstm2x64-w48-h12-" + ("known" if known else "covariate"),
        created=datetime.now(UTC),
        spec=model.spec,
        training_config={"model": cfg.model_dump()},
        data=DataInfo(fingerprint="0" * 64, source="random weights", series=1, rows=WINDOW),
        onnx_sha256=store.sha256_bytes(onnx_bytes),
    )
    predictor = OnnxPredictor.from_bytes(onnx_bytes, manifest.spec)
    check_parity(model, predictor, x, float(np.std(x[..., 0])))
    forecast = predictor.predict(x)
    actual = forecast + np.random.default_rng(1).normal(0, 5, size=forecast.shape).astype(np.float32)
    manifest = manifest.model_copy(update={"intervals": intervals.calibrate(x, actual, forecast)})
    return store.publish(model_dir, manifest, onnx_bytes)


def known_request_body(n: int, known: bool = True, dated: bool | None = None) -> bytes:
    """Like ``request_body``, with rows of [value, temperature]; ``known``: also the first value's
    time and the temperature of the forecast hours (``bench-known``); ``dated`` (default: as
    ``known``): the first value's time (the answer then carries the forecast's timestamps)."""
    rng = np.random.default_rng(3)
    temps = np.round(15 + 5 * rng.normal(size=(n, WINDOW + HORIZON)), 1)
    rows = []
    for i, row in enumerate(series(n, WINDOW).astype(float)):
        one: dict[str, Any] = {"id": f"s{i}", "values": np.stack([row, temps[i, :WINDOW]], axis=1).tolist()}
        if known if dated is None else dated:
            one["start"] = START
        if known:
            one["future"] = {"temp": temps[i, WINDOW:].tolist()}
        rows.append(one)
    return json.dumps({"series": rows}).encode()


def known_ratios(results: dict[str, list[dict[str, float]]]) -> list[str]:
    """Table rows: req/s with inputs known in advance over the same network reading the
    temperature as a past covariate, undated (the whole cost of the feature: the dates, the
    answer's timestamps, the future values, the calendar) and dated (the future values and the
    calendar alone); median of the per-round ratios, for the phases that ran."""
    rows = []
    for n in (1, BATCH):
        plain = f"Seqcast forecast, {n} series"
        known = plain + ", known inputs"
        for other, what in ((", covariate", "undated"), (", covariate, dated", "dated alike")):
            if known in results and plain + other in results and results[known]:
                ratio = statistics.median(
                    a["rps"] / b["rps"] for a, b in zip(results[known], results[plain + other], strict=True)
                )
                rows.append(
                    f"| {n} series: the temperature known in advance, with hour and weekday (dated, "
                    f"future values) / as a past covariate, {what} (req/s, median of rounds) | "
                    f"{ratio:.2f} | >= 0.91 (cost <= 1.1 x) |"
                )
    return rows


def series(n: int, length: int, seed: int = 0) -> np.ndarray:
    """float32 (n, length): daily-cycle-like series with noise, rounded as a client would send them."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :] + rng.integers(0, 24, size=(n, 1))
    level = rng.uniform(50, 500, size=(n, 1))
    values = level * (1 + 0.2 * np.sin(2 * np.pi * t / 24)) + rng.normal(0, 5, size=(n, length))
    return np.round(values, 2).astype(np.float32)


def v2_binary_body(n: int, levels: list[float] | None = None) -> tuple[bytes, int]:
    """A KServe V2 infer request, the tensor as raw bytes (tritonclient's default), and its header size;
    with ``levels``, the bounds at those levels are asked too (``y_lower_80``...), also as raw bytes."""
    x = series(n, WINDOW)[..., None]  # (n, window, 1) float32
    names = ["y"] + [f"y_{side}_{level:g}" for level in levels or [] for side in ("lower", "upper")]
    header = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": list(x.shape), "datatype": "FP32",
                 "parameters": {"binary_data_size": x.nbytes}}
            ],
            "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in names],
        }
    ).encode()  # fmt: skip
    return header + x.astype("<f4").tobytes(), len(header)


def request_body(n: int, levels: list[float] | None = None) -> bytes:
    body: dict[str, Any] = {
        "series": [
            {"id": f"s{i}", "values": row.tolist()} for i, row in enumerate(series(n, WINDOW).astype(float))
        ]
    }
    if levels:
        body["levels"] = levels
    return json.dumps(body).encode()


# -- bare onnxruntime --------------------------------------------------------------


def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_call_seconds(path: str, batch: int, threads: int, calls: int = 2000) -> float:
    """Median seconds of one ``run`` on (batch, window, 1)."""
    sess = _session(path, threads)
    x = series(batch, WINDOW)[..., None]
    for _ in range(50):
        sess.run(["y"], {"x": x})
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        sess.run(["y"], {"x": x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _ort_worker(path: str, threads: int, seconds: float, start: Any, out: Any) -> None:
    sess = _session(path, threads)
    x = series(BATCH, WINDOW)[..., None]
    sess.run(["y"], {"x": x})
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(["y"], {"x": x})
        n += 1
    out.put(n * BATCH / (time.perf_counter() - t0))


def ort_batch_series_per_s(path: str, procs: int, threads: int, seconds: float) -> float:
    """Series/s of ``procs`` processes running (256, window, 1) batches: the gunicorn layout minus HTTP."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_ort_worker, args=(path, threads, seconds, start, out)) for _ in range(procs)
    ]
    for w in workers:
        w.start()
    time.sleep(1.5)  # let them import and warm up
    start.set()
    total = sum(out.get(timeout=seconds + 60) for _ in workers)
    for w in workers:
        w.join()
    return total


# -- servers and load ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A server process listening on ``port``, in a session of its own, its output in ``log``."""

    group_stop = False  # SIGTERM the whole process group (servers that run workers of their own)
    request_timeout = 2.0  # seconds for one readiness request

    def __init__(
        self, command: list[str], cwd: Path, env: dict[str, str] | None, log: Path, port: int
    ) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self, path: str, body: bytes | None = None, timeout: float = 30) -> float:
        """Seconds from start to the first 200 on ``path``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.base} exited with {self.proc.returncode}")
            try:
                req = urllib.request.Request(
                    self.base + path, data=body, headers={"Content-Type": "application/json"} if body else {}
                )
                with urllib.request.urlopen(req, timeout=self.request_timeout) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{self.base}{path} not answering after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.group_stop:
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class Server(Process):
    """gunicorn with the repo config on a free port; stopped with SIGTERM."""

    def __init__(self, app: str, env: dict[str, str], log: Path) -> None:
        port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith(("SEQCAST_", "PROMETHEUS_"))}
        full |= env | {"SEQCAST_BIND": f"127.0.0.1:{port}"}
        super().__init__([str(GUNICORN), "-c", "service/gunicorn.conf.py", app], ROOT, full, log, port)

    def worker_rss_mib(self) -> list[float]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        out = []
        for pid in children:
            status = Path(f"/proc/{pid}/status").read_text()
            out.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024)  # type: ignore[union-attr]
        return out


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(
    url: str,
    seconds: float,
    connections: int,
    body_file: Path | None,
    lua: Path,
    header_length: int = 0,
    errors_ok: bool = False,
) -> dict[str, float]:
    """wrk's req/s and p50/p99 latency; a socket error or non-2xx answer raises, unless
    ``errors_ok``, which counts them under "errors" instead (a layout that starves some
    connections is measured, not hidden)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{round(seconds)}s", "--latency", url]
    env = dict(os.environ)
    if body_file is not None:
        cmd[1:1] = ["-s", str(lua)]
        env["BODY_FILE"] = str(body_file)
        env["HEADER_LENGTH"] = str(header_length) if header_length else ""
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=seconds + 60, check=True
    ).stdout
    if not errors_ok and ("Non-2xx" in out or "Socket errors" in out):
        raise RuntimeError(f"errors under load:\n{out}")

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    result = {"rps": float(rps.group(1)), "p50_ms": latency("50"), "p99_ms": latency("99")}
    if errors_ok:
        socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        result["errors"] = float(
            (sum(int(g) for g in socket.groups()) if socket else 0) + (int(non2xx.group(1)) if non2xx else 0)
        )
    return result


# -- install sizes ------------------------------------------------------------------


def extra_size_mib(extra: str) -> float:
    """Installed size of the core dependencies plus one extra, with everything they pull in."""
    from packaging.requirements import Requirement

    project = metadata.distribution("seqcast")
    roots = [Requirement(r) for r in project.requires or []]
    wanted = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": extra})]
    seen: set[str] = set()
    total = 0
    while wanted:
        req = wanted.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen or key == "seqcast":
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        base = Path(str(dist.locate_file("")))
        total += sum((base / f).stat().st_size for f in dist.files or [] if (base / f).is_file())
        for sub in dist.requires or []:
            r = Requirement(sub)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                wanted.append(r)
    return total / 2**20


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (before the run: is someone else using the machine?)."""

    def snap() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = snap()
    time.sleep(seconds)
    total1, idle1 = snap()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds spent by the whole machine since boot (all cores, idle and iowait excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / _TICK


def _tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (a gunicorn master and its workers)."""
    total = 0.0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for p in [str(pid), *kids]:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / _TICK  # utime, stime
    except OSError:
        pass
    return total


def wait_quiet(max_cores: float, limit_s: float) -> None:
    """Wait (up to ``limit_s``) until the machine is idle but for ``max_cores``: our servers are idle now."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        busy = cpu_busy(1.0) * (os.cpu_count() or 1)
        if busy <= max_cores:
            return
        print(f"    waiting: other processes use {busy:.2f} cores", flush=True)
        time.sleep(4)


class Foreign:
    """Cores used by processes other than ours (servers, wrk, this script) during a phase.

    The machine is shared: a training job started by someone else halfway
    through a phase is visible here, and the phase is run again.
    """

    def __init__(self, servers: list[Server]) -> None:
        self.pids = [s.proc.pid for s in servers]

    def _ours(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once waited for
        return (
            own.ru_utime
            + own.ru_stime
            + kids.ru_utime
            + kids.ru_stime
            + sum(_tree_seconds(p) for p in self.pids)
        )

    def __enter__(self) -> Foreign:
        self.t0, self.busy0, self.ours0 = time.perf_counter(), _busy_seconds(), self._ours()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        self.cores = max(0.0, (_busy_seconds() - self.busy0) - (self._ours() - self.ours0)) / wall


# -- the run -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per load phase")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; the table shows medians")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.1,
        help="cores other processes may use during a phase before it is run again",
    )
    parser.add_argument(
        "--attempts", type=int, default=3, help="runs of a contaminated phase before keeping it"
    )
    parser.add_argument(
        "--only",
        action="append",
        help="run only the phases whose name holds this text (repeatable; e.g. --only covariate "
        "--only known); prints their table and the ratios among them",
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=60, help="seconds to wait for an idle machine before each phase"
    )
    args = parser.parse_args()
    # `timeout` and Ctrl-C must still stop the servers (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="seqcast-bench-"))
    models = work / "models"
    models.mkdir()
    bundle = build_bundle(models)
    build_known_bundle(models)
    build_known_bundle(models, known=False)
    onnx_path = str(bundle / "model.onnx")
    bodies = {"single": work / "single.json", "batch": work / "batch.json"}
    bodies["single"].write_bytes(request_body(1))
    bodies["batch"].write_bytes(request_body(BATCH))
    bodies["single-levels"] = work / "single-levels.json"
    bodies["single-levels"].write_bytes(request_body(1, LEVELS))
    bodies["batch-levels"] = work / "batch-levels.json"
    bodies["batch-levels"].write_bytes(request_body(BATCH, LEVELS))
    bodies["v2"] = work / "v2.bin"
    v2_body, v2_header = v2_binary_body(BATCH)
    bodies["v2"].write_bytes(v2_body)
    bodies["v2-levels"] = work / "v2-levels.bin"
    v2_levels_body, v2_levels_header = v2_binary_body(BATCH, LEVELS)
    bodies["v2-levels"].write_bytes(v2_levels_body)
    header_lengths = {"v2": v2_header, "v2-levels": v2_levels_header}
    for n, size in ((1, "single"), (BATCH, "batch")):
        for known, dated, kind in (
            (True, True, "known"),
            (False, False, "covariate"),
            (False, True, "dated"),
        ):
            bodies[f"{size}-{kind}"] = work / f"{size}-{kind}.json"
            bodies[f"{size}-{kind}"].write_bytes(known_request_body(n, known, dated))
    lua = work / "post.lua"
    lua.write_text(LUA)
    busy = cpu_busy()
    env = {"SEQCAST_MODEL_DIR": str(models), "SEQCAST_WORKERS": str(args.workers), "SEQCAST_THREADS": "1"}
    cores = usable_cores()
    intra = max(1, cores // args.workers)
    print(
        f"{args.workers} sync workers x 1 thread, {intra} onnxruntime thread(s) per session, {cores} cores; "
        f"wrk -t2 -c{args.connections}, {args.duration:g} s per phase, {args.rounds} round(s); "
        f"CPU busy before the run: {busy:.0%}",
        flush=True,
    )

    ort_single = ort_call_seconds(onnx_path, 1, intra)
    ort_batch = ort_call_seconds(onnx_path, BATCH, intra, calls=100)
    print(
        f"bare onnxruntime: {ort_single * 1e3:.3f} ms per 1-series call, {ort_batch * 1e3:.1f} ms per "
        f"{BATCH}-series call ({intra} thread)",
        flush=True,
    )

    ref = Server("bench.reference_app:create_app()", env, work / "reference.log")
    seq = Server("service:create_app()", env, work / "seqcast.log")
    forecast = f"/v1/models/{NAME}/forecast"
    known_forecast = f"/v1/models/{KNOWN_NAME}/forecast"
    covariate_forecast = f"/v1/models/{COVARIATE_NAME}/forecast"
    phases = [
        ("floor: constant Flask endpoint", ref, "/ping", None),
        ("Seqcast GET /healthz", seq, "/healthz", None),
        ("hand-built forecast, 1 series", ref, "/forecast", "single"),
        ("Seqcast forecast, 1 series", seq, forecast, "single"),
        ("Seqcast forecast, 1 series, levels 80 95", seq, forecast, "single-levels"),
        ("Seqcast forecast, 1 series, covariate", seq, covariate_forecast, "single-covariate"),
        ("Seqcast forecast, 1 series, covariate, dated", seq, covariate_forecast, "single-dated"),
        ("Seqcast forecast, 1 series, known inputs", seq, known_forecast, "single-known"),
        (f"hand-built forecast, {BATCH} series", ref, "/forecast", "batch"),
        (f"Seqcast forecast, {BATCH} series", seq, forecast, "batch"),
        (f"Seqcast forecast, {BATCH} series, levels 80 95", seq, forecast, "batch-levels"),
        (f"Seqcast forecast, {BATCH} series, covariate", seq, covariate_forecast, "batch-covariate"),
        (f"Seqcast forecast, {BATCH} series, covariate, dated", seq, covariate_forecast, "batch-dated"),
        (f"Seqcast forecast, {BATCH} series, known inputs", seq, known_forecast, "batch-known"),
        (f"Seqcast V2 infer, {BATCH} series, binary tensors", seq, f"/v2/models/{NAME}/infer", "v2"),
        (
            f"Seqcast V2 infer, {BATCH} series, binary tensors, bounds 80 95",
            seq,
            f"/v2/models/{NAME}/infer",
            "v2-levels",
        ),
    ]
    if args.only:  # the floor always runs: it says how fast this machine is right now
        phases = [p for p in phases if p is phases[0] or any(word in p[0] for word in args.only)]
    results: dict[str, list[dict[str, float]]] = {p[0]: [] for p in phases}
    try:
        ref.wait("/ping")
        seq.wait("/readyz")
        rss_loaded = seq.worker_rss_mib()
        for server, path, body in {(p[1], p[2], p[3]) for p in phases}:  # warm-up, discarded
            wrk(
                server.base + path,
                2,
                args.connections,
                bodies[body] if body else None,
                lua,
                header_lengths.get(body or "", 0),
            )
        foreign: dict[str, list[float]] = {p[0]: [] for p in phases}
        for r in range(args.rounds):
            order = phases if r % 2 == 0 else phases[::-1]
            for label, server, path, body in order:
                for attempt in range(1, args.attempts + 1):
                    wait_quiet(args.max_foreign, args.wait_quiet)
                    with Foreign([ref, seq]) as other:
                        res = wrk(
                            server.base + path,
                            args.duration,
                            args.connections,
                            bodies[body] if body else None,
                            lua,
                            header_lengths.get(body or "", 0),
                        )
                    flag = "" if other.cores <= args.max_foreign else "  (contaminated"
                    print(
                        f"  round {r + 1}: {label:38s} {res['rps']:9.1f} req/s  p50 {res['p50_ms']:7.2f} ms  "
                        f"p99 {res['p99_ms']:7.2f} ms  other processes {other.cores:.2f} cores{flag}"
                        + (", again)" if flag and attempt < args.attempts else ")" if flag else ""),
                        flush=True,
                    )
                    if not flag:
                        break
                results[label].append(res)
                foreign[label].append(other.cores)
        rss_after = seq.worker_rss_mib()
    finally:
        ref.stop()
        seq.stop()
    if args.only:
        print()
        print("| endpoint | req/s (median of rounds) | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for label, runs in results.items():
            m = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
            print(f"| {label} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
        print()
        for line in known_ratios(results):
            print(line)
        return
    for _ in range(args.attempts):
        with Foreign([]) as other:
            bare_batch = ort_batch_series_per_s(onnx_path, args.workers, intra, min(args.duration, 10))
        print(
            f"  bare onnxruntime, {BATCH} series: {bare_batch:,.0f} series/s, other processes "
            f"{other.cores:.2f} cores",
            flush=True,
        )
        if other.cores <= args.max_foreign:
            break

    colds = []
    for _ in range(3):
        cold = Server("service:create_app()", env, work / "cold.log")
        try:
            colds.append(cold.wait(forecast, bodies["single"].read_bytes()))
        finally:
            cold.stop()
    serve_mib, train_mib = extra_size_mib("serve"), extra_size_mib("train")

    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50_ms", "p99_ms")}
        for k, v in results.items()
    }
    floor = med["floor: constant Flask endpoint"]["rps"]
    single = med["Seqcast forecast, 1 series"]["rps"]
    ref_single = med["hand-built forecast, 1 series"]["rps"]
    batch = med[f"Seqcast forecast, {BATCH} series"]["rps"] * BATCH
    ref_batch = med[f"hand-built forecast, {BATCH} series"]["rps"] * BATCH
    bound = 1 / (1 / floor + ort_single / cores)
    print()
    print("| endpoint | req/s | series/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for label, m in med.items():
        n = BATCH if str(BATCH) in label else (1 if "forecast" in label else 0)
        print(
            f"| {label} | {m['rps']:,.0f} | {m['rps'] * n:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |"
            if n
            else f"| {label} | {m['rps']:,.0f} | | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |"
        )
    print(f"| bare onnxruntime, {BATCH} series, {args.workers} processes | | {bare_batch:,.0f} | | |")
    print()
    print("| ratio | value | goal |")
    print("|---|---:|---:|")
    print(
        f"| 1 series: Seqcast / (1 / (1/floor + ORT {ort_single * 1e3:.2f} ms / {cores} cores)) "
        f"= {single:,.0f} / {bound:,.0f} | {single / bound:.2f} | >= 0.9 |"
    )
    print(f"| 1 series: hand-built / the same bound | {ref_single / bound:.2f} | |")

    def paired(a: str, b: str) -> float:  # median of per-round ratios: both sides saw the same machine
        return statistics.median(x["rps"] / y["rps"] for x, y in zip(results[a], results[b], strict=True))

    print(
        f"| 1 series: Seqcast / hand-built (median of rounds) | "
        f"{paired('Seqcast forecast, 1 series', 'hand-built forecast, 1 series'):.2f} | >= 0.95 |"
    )
    print(f"| {BATCH} series: Seqcast / bare onnxruntime (series/s) | {batch / bare_batch:.2f} | >= 0.9 |")
    print(f"| {BATCH} series: hand-built / bare onnxruntime (series/s) | {ref_batch / bare_batch:.2f} | |")
    v2_batch = med[f"Seqcast V2 infer, {BATCH} series, binary tensors"]["rps"] * BATCH
    print(f"| {BATCH} series: Seqcast V2 binary tensors / bare onnxruntime | {v2_batch / bare_batch:.2f} | |")
    print(
        f"| {BATCH} series: Seqcast / hand-built (median of rounds) | "
        f"{paired(f'Seqcast forecast, {BATCH} series', f'hand-built forecast, {BATCH} series'):.2f} "
        "| >= 0.95 |"
    )
    for n in (1, BATCH):
        plain = f"Seqcast forecast, {n} series"
        print(
            f"| {n} series: with 80 and 95 % intervals / without (req/s, median of rounds) | "
            f"{paired(plain + ', levels 80 95', plain):.2f} | >= 0.91 (cost <= 1.1 x) |"
        )
    for line in known_ratios(results):
        print(line)
    v2 = f"Seqcast V2 infer, {BATCH} series, binary tensors"
    print(
        f"| {BATCH} series, V2 binary tensors: with 80 and 95 % bounds / without (the computation alone, "
        f"no JSON numbers) | {paired(v2 + ', bounds 80 95', v2):.2f} | |"
    )
    print(
        f"| Seqcast /healthz / constant Flask endpoint (median of rounds) | "
        f"{paired('Seqcast GET /healthz', 'floor: constant Flask endpoint'):.2f} | |"
    )
    print(f"| worker RSS, model loaded (MiB) | {max(rss_loaded):.0f} | <= 130 |")
    print(f"| worker RSS after the load phases (MiB) | {max(rss_after):.0f} | |")
    print(f"| cold start to the first forecast (s, median of 3) | {statistics.median(colds):.2f} | <= 1 |")
    print(
        f"| installed size: serve / train extras (MiB) | {serve_mib:,.0f} / {train_mib:,.0f} "
        f"= {serve_mib / train_mib:.2f} | |"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "median": med,
                    "ort_single_s": ort_single,
                    "ort_batch_s": ort_batch,
                    "bare_batch_series_s": bare_batch,
                    "rss_loaded_mib": rss_loaded,
                    "rss_after_mib": rss_after,
                    "cold_start_s": colds,
                    "serve_mib": serve_mib,
                    "train_mib": train_mib,
                    "cpu_busy_before": busy,
                },
                indent=2,
            )
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
