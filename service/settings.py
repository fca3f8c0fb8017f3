"""Service settings: one pydantic-settings class, read from ``SEQCAST_*`` variables.

Built inside ``create_app`` (and by the gunicorn config in the master), never at
import time. Unsafe values fail at start-up with a message that names the
variable, rather than at the first request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SEQCAST_"
MiB = 1 << 20


def usable_cores() -> int:
    """CPU cores this process may use: the affinity mask, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` reports the host's cores even inside a container limited
    with ``--cpus``; sizing workers and thread pools from it oversubscribes.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


class Settings(BaseSettings):
    """Everything the service reads from the environment (``SEQCAST_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    model_dir: Path = Field(default=Path("models"), description="bundle store: MODEL_DIR/<name>/<version>/")
    bind: str = Field(default="127.0.0.1:8000", description="gunicorn bind address (host:port or unix:path)")
    workers: int = Field(default_factory=usable_cores, ge=1, le=256, description="gunicorn worker processes")
    threads: int = Field(default=1, ge=1, le=64, description="threads per worker; >1 selects gthread")
    intra_op_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="onnxruntime intra-op threads per session; default cores // (workers x threads), >= 1",
    )
    arena_shrink_batch: int = Field(
        default=256,
        ge=0,
        le=1_000_000,
        description="after a model run on more series than this, onnxruntime returns the memory the run "
        "grew its arena by (0: never): worker memory against the time of very large batches",
    )
    max_series: int = Field(default=1024, ge=1, le=100_000, description="series per forecast request")
    batch_max_size: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="adaptive batching: concurrent forecasts for one model in one worker are answered by "
        "one model call of up to this many series (0 or 1: off; needs threads > 1)",
    )
    batch_max_delay_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description="adaptive batching: how long a model call that is not full waits for more requests "
        "(0: it takes what is queued and runs at once; under load the queue fills while the model runs)",
    )
    max_body_bytes: int = Field(
        default=8 * MiB, ge=1024, le=256 * MiB, description="request body limit (Flask MAX_CONTENT_LENGTH)"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    access_log: bool = Field(
        default=False, description="gunicorn access log to stdout (the request log below says more)"
    )
    request_log: bool = Field(
        default=True,
        description="one JSON line per request on stderr: time, request id, method, route, status, "
        "duration, model, version, series (service/requestlog.py)",
    )
    timeout: int = Field(
        default=30, ge=1, le=3600, description="gunicorn: kill a worker silent this long (s)"
    )
    read_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="408 when a request body stalls this long between two reads (any worker class); "
        "below timeout, so no worker is killed for a slow client",
    )
    graceful_timeout: int = Field(
        default=20, ge=1, le=3600, description="gunicorn: finish in-flight work (s)"
    )
    keepalive: int = Field(default=5, ge=0, le=300, description="gunicorn: idle keep-alive, gthread only (s)")
    max_requests: int = Field(
        default=0, ge=0, description="gunicorn: recycle a worker after N requests; 0 off"
    )
    poll_seconds: float = Field(
        default=5.0, ge=0, le=86_400, description="re-read CURRENT this often, hot-swap new versions; 0 off"
    )
    metrics_flush_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="write each worker's request tallies to the shared metrics this often; 0: every request",
    )

    admin_key: SecretStr | None = Field(
        default=None,
        description="admin key for POST /v1/models/<name>/reload (and every other route); unset: open",
    )
    admin_key_file: Path | None = Field(
        default=None, description="a file holding the admin key (re-read when it changes)"
    )
    api_keys: SecretStr | None = Field(
        default=None, description="comma-separated keys for the /v1 and /v2 model routes; unset: open"
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="a file of API keys, one per line ('#' comments), re-read when it changes: rotation",
    )
    metrics_key: SecretStr | None = Field(default=None, description="key for GET /metrics; unset: open")
    auth_failures: int = Field(
        default=10, ge=1, le=10_000, description="wrong keys a client may send per window before 429"
    )
    auth_window_seconds: float = Field(default=60.0, gt=0, le=86_400, description="the throttle's window")
    proxy_hops: int = Field(
        default=0,
        ge=0,
        le=5,
        description="trusted proxies in front (X-Forwarded-For hops): the client is the address they pass on",
    )

    @field_validator("admin_key", "api_keys", "metrics_key", "admin_key_file", "api_keys_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes SEQCAST_ADMIN_KEY= (empty) when the host variable is unset.
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        if value.startswith("unix:"):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port or unix:/path, got {value!r}")
        return value

    @model_validator(mode="after")
    def _key_files(self) -> Settings:
        # read now, so a missing or empty key file stops the server instead of leaving it open
        for field, path in (("admin_key_file", self.admin_key_file), ("api_keys_file", self.api_keys_file)):
            if path is None:
                continue
            try:
                keys = read_key_file(path)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{field} {str(path)!r}: cannot read it ({exc})") from None
            if not keys:
                raise ValueError(f"{field} {str(path)!r} holds no key")
        return self

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        if not self.model_dir.is_dir():
            raise ValueError(f"model_dir {str(self.model_dir)!r} is not a directory (SEQCAST_MODEL_DIR)")
        cores = usable_cores()
        # Threads > cores / workers are for waiting on slow clients, so only an
        # explicit intra-op count can oversubscribe by construction.
        if self.intra_op_threads is not None and self.intra_op_threads > 1:
            busy = self.workers * self.threads * self.intra_op_threads
            if busy > cores:
                raise ValueError(
                    f"intra_op_threads={self.intra_op_threads} with {self.workers} workers x "
                    f"{self.threads} threads needs {busy} cores, this machine has {cores}; "
                    "unset SEQCAST_INTRA_OP_THREADS to size it automatically"
                )
        if self.read_timeout >= self.timeout:
            raise ValueError(
                f"read_timeout={self.read_timeout:g} must be below timeout={self.timeout}: "
                "a stalled upload would otherwise get the worker killed"
            )
        if self.batch_max_size > 1 and self.threads < 2:
            raise ValueError(
                f"batch_max_size={self.batch_max_size} with threads={self.threads}: a worker answers one "
                "request at a time, so there is nothing to batch; set SEQCAST_THREADS above 1"
            )
        if 0 < self.poll_seconds < 0.5:
            raise ValueError(f"poll_seconds={self.poll_seconds}: at most twice a second, or 0 to disable")
        if self.workers > 4 * cores:
            raise ValueError(
                f"workers={self.workers} on {cores} cores: each worker holds its own model sessions; "
                "CPU-bound inference gains nothing past one worker per core"
            )
        return self

    @property
    def intra_op(self) -> int:
        """onnxruntime intra-op threads: cores shared by every thread that may run a session."""
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return max(1, usable_cores() // (self.workers * self.threads))


def read_key_file(path: Path) -> list[str]:
    """Keys in a file: one per line, blank lines and ``#`` comments skipped. Raises OSError, or
    ValueError when it is not UTF-8."""
    text = path.read_bytes().decode()
    return [k for line in text.splitlines() if (k := line.split("#", 1)[0].strip())]


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """``SEQCAST_*`` variables that name no setting: most likely typos."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


class SettingsError(ValueError):
    """A ``SEQCAST_*`` variable holds a value the service cannot use; the message names it."""


def load_settings() -> Settings:
    """``Settings()`` from the environment; SettingsError naming each bad variable and why, in a
    line each (pydantic's own message names the field, not the variable, over a dozen lines)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line per problem: ``SEQCAST_WORKERS='abc': Input should be a valid integer ...``; a
    secret's value is never shown."""
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if not field:  # a check across fields: its message names them
            lines.append(message)
            continue
        variable = f"{ENV_PREFIX}{field.upper()}"
        info = Settings.model_fields.get(field)
        secret = info is not None and "SecretStr" in str(info.annotation)
        shown = "(hidden)" if secret else repr(os.environ.get(variable, error.get("input")))
        lines.append(f"{variable}={shown}: {message}")
    return "; ".join(lines)
