"""gunicorn settings for Seqcast: ``gunicorn -c service/gunicorn.conf.py 'service:create_app()'``.

Everything comes from the same ``SEQCAST_*`` settings class as the app, read
once here in the master so a bad value stops the server before any worker
starts.

Sizing: inference is CPU-bound, so the default is one sync worker per usable
core, one thread each, and one onnxruntime intra-op thread per session
(``workers x threads x intra-op threads <= cores``; see ``Settings.intra_op``).
Sync workers expect a buffering proxy in front for slow clients on the open
internet; ``SEQCAST_THREADS>1`` switches to gthread workers, which also keep
connections alive.

Models load in each worker after fork (``post_worker_init``), never in the
master: the app is not preloaded, and onnxruntime sessions and their thread
pools do not survive a fork. A worker loads and warms up every model before it
accepts its first connection, so no request waits for a load and a slow model
cannot leave a worker half-ready; the cost is boot time per worker (well under
a second for these models; it must stay below ``timeout``).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from service import gunicorn_errors
from service.settings import SettingsError, load_settings

gunicorn_errors.install()  # its own 400/414/431 answers as JSON, in every worker forked later

try:
    _settings = load_settings()
except SettingsError as exc:  # one line naming the variable, not a traceback naming a field
    raise SystemExit(f"seqcast: bad setting: {exc}") from None

bind = [_settings.bind]
workers = _settings.workers
threads = _settings.threads
# gunicorn's sync worker that answers the connections queued at SIGTERM (service/workers.py)
worker_class = "gthread" if _settings.threads > 1 else "service.workers.SyncWorker"
preload_app = False  # see above: sessions must be created in the workers
# gunicorn >= 27 opens an admin socket at a fixed path in $HOME: unused here, and two
# servers on one host (tests, the benchmark) would fight over it.
control_socket_disable = True
timeout = _settings.timeout  # a worker silent this long (stuck in a model call) is killed and replaced
graceful_timeout = _settings.graceful_timeout  # SIGTERM: stop accepting, finish in-flight requests
keepalive = _settings.keepalive
max_requests = _settings.max_requests  # off by default: no leak to hide, and a restart costs a model load
max_requests_jitter = _settings.max_requests // 10
loglevel = _settings.log_level
accesslog = "-" if _settings.access_log else None
errorlog = "-"
proc_name = "seqcast"
# The worker heartbeat is a file touched every second; on a container's overlay
# filesystem that write can stall, so keep it in memory when /dev/shm exists.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server: Any) -> None:
    """Master, before any worker: a clean directory for the workers' shared metric files."""
    path = os.environ.get(_MULTIPROC)
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):  # counters of a previous run
            os.unlink(stale)
    else:
        path = tempfile.mkdtemp(prefix="seqcast-metrics-")
        server.seqcast_metrics_dir = path  # removed in on_exit
        os.environ[_MULTIPROC] = path  # inherited by every worker forked after this
    server.log.info(
        "seqcast: %d workers x %d threads, %d onnxruntime threads per session; metrics in %s",
        _settings.workers,
        _settings.threads,
        _settings.intra_op,
        path,
    )


def post_fork(server: Any, worker: Any) -> None:
    """Worker, just after fork: nothing heavy here; the app is not even imported yet."""
    server.log.debug("worker %s forked", worker.pid)


def post_worker_init(worker: Any) -> None:
    """Worker, app imported, before accepting: load and warm up every model."""
    from service.app import load_models

    load_models(worker.wsgi)


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, on its way out (graceful stop, max_requests): write its last metric tallies."""
    from service.app import stop_background

    stop_background(getattr(worker, "wsgi", None))  # also called in the master for a vanished worker


def worker_abort(worker: Any) -> None:
    worker.log.error(
        "worker %s aborted after %ss without a heartbeat (a stuck request?)", worker.pid, timeout
    )


def child_exit(server: Any, worker: Any) -> None:
    """Master: drop a dead worker's live gauges from the shared metrics."""
    if os.environ.get(_MULTIPROC):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    path = getattr(server, "seqcast_metrics_dir", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
