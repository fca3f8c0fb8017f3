"""Settings from SEQCAST_* variables: a bad value stops the service with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, SettingsError, describe, load_settings

REPO = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).parent / "gunicorn"


def test_a_bad_value_names_the_variable_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEQCAST_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SEQCAST_WORKERS", "abc")
    monkeypatch.setenv("SEQCAST_MAX_BODY_BYTES", "5")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "SEQCAST_WORKERS='abc': Input should be a valid integer" in message
    assert "SEQCAST_MAX_BODY_BYTES='5': Input should be greater than or equal to 1024" in message
    assert "\n" not in message and "For further information" not in message
    # a check across fields keeps its own words
    monkeypatch.delenv("SEQCAST_WORKERS")
    monkeypatch.delenv("SEQCAST_MAX_BODY_BYTES")
    monkeypatch.setenv("SEQCAST_POLL_SECONDS", "0.1")
    with pytest.raises(SettingsError, match=r"^poll_seconds=0.1: at most twice a second"):
        load_settings()


def test_a_secret_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQCAST_ADMIN_KEY", "hunter2")
    with pytest.raises(ValidationError) as caught:
        Settings(admin_key=123)  # type: ignore[arg-type]
    message = describe(caught.value)
    assert message.startswith("SEQCAST_ADMIN_KEY=(hidden): ") and "hunter2" not in message


def test_gunicorn_stops_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQCAST_")}
    env |= {"SEQCAST_MODEL_DIR": str(tmp_path), "SEQCAST_THREADS": "many", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [str(GUNICORN), "-c", "service/gunicorn.conf.py", "service:create_app()"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    output = (done.stdout + done.stderr).strip()
    expected = "SEQCAST_THREADS='many': Input should be a valid integer, unable to parse string as an integer"
    assert output == f"seqcast: bad setting: {expected}", output
