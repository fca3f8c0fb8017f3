"""Every example in README.md, docs/*.md and data/README.md runs as written.

Fenced ```bash and ```python blocks are examples (``tests/docs_blocks.py`` has the
whole convention). For each file the test builds a checkout-like working
directory in a temporary folder (``configs/`` and ``data/`` copied, ``.venv``
linked; this checkout's code wins through ``PYTHONPATH``) holding the demo model
as ``make run`` publishes it (``seqcast train --config configs/demo.toml``, run
once per session and copied), starts the real gunicorn on a free 127.0.0.1 port
serving its ``models/``, and runs the file's examples in order, as a reader
would in one terminal while ``make run`` serves in another:

- bash blocks run with ``bash -c 'set -euo pipefail; ...'`` and must exit 0;
  python blocks with ``.venv/bin/python``;
- ``localhost:8000`` and ``127.0.0.1:8000`` become the test server's address;
- ``seqcast train``, ``retrain`` and ``explain`` get ``--epochs 3`` (the
  only rewrite of a command; the docs' epochs train for minutes each on 2
  cores);
- an answer block (```json or ```http) after an example must match the JSON
  that ends the example's output (or the whole HTTP answer) in shape: keys,
  types, the number of forecast steps, the HTTP status; not in value, as a
  3-epoch model forecasts other numbers;
- an example that prints a warning about an old config name fails.

```console blocks, and untagged ones that read like a command, are not run;
each one is reported as a skipped test with its reason (``pytest -ra`` lists
them). The fast checks (no server) keep the convention honest: a ```bash block
in a Markdown file the test does not scan, a command not run for no known
reason, or a curl that would hide an HTTP error, all fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from docs_blocks import (
    REPO,
    RUN,
    SHELL_TAGS_REFUSED,
    Block,
    answer_problems,
    blocks,
    curl_problems,
    is_not_run,
    markdown_files,
    not_run_reason,
    scanned_files,
)
from gunicorn_server import gunicorn

EPOCHS = 3
BLOCK_TIMEOUT = 300  # seconds; the slowest example trains for a few seconds
FILES = scanned_files()
ALL = [b for f in FILES for b in blocks(f)]
NOT_RUN = [b for b in ALL if is_not_run(b)]
RUN_FILES = [f for f in FILES if any(b.lang in RUN for b in blocks(f))]


def _venv() -> Path:
    for candidate in (REPO / ".venv", Path(sys.prefix)):
        if (candidate / "bin" / "seqcast").exists():
            return candidate.resolve()
    pytest.skip("no virtual environment with the seqcast command (run `make install`)")


def rewrite(text: str, port: int) -> str:
    """The example as the test runs it: the test server's port, few epochs."""
    text = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", f"127.0.0.1:{port}", text)
    text = re.sub(r"--epochs[ =]\d+", f"--epochs {EPOCHS}", text)
    return re.sub(r"(seqcast (?:train|retrain|explain))\b", rf"\1 --epochs {EPOCHS}", text)


def run_example(block: Block, cwd: Path, env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    code = rewrite(block.text, port)
    if block.lang == "bash":
        argv = ["bash", "-c", "set -euo pipefail\n" + code]
    else:
        script = cwd / f".example_{block.line}.py"
        script.write_text(code)
        argv = [str(cwd / ".venv" / "bin" / "python"), str(script)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


def _checkout(root: Path) -> tuple[Path, dict[str, str]]:
    """A working directory that looks like a fresh checkout after `make install`, and the
    environment its examples run in."""
    work = root / "seqcast"
    work.mkdir()
    for folder in ("configs", "data"):
        shutil.copytree(REPO / folder, work / folder)
    (work / ".venv").symlink_to(_venv(), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQCAST_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = str(REPO)  # this checkout's code, whatever the venv's editable install points at
    return work, env


def _report(block: Block, done: subprocess.CompletedProcess[str], port: int) -> str:
    return (
        f"{block.where} ({block.lang}) exited {done.returncode}\n--- as run ---\n{rewrite(block.text, port)}"
        f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/`` of a checkout after ``make run`` published the demo (trained once, copied per file)."""
    work, env = _checkout(tmp_path_factory.mktemp("demo"))
    demo = subprocess.run(
        [".venv/bin/seqcast", "train", "--config", "configs/demo.toml", "--epochs", str(EPOCHS), "-q"],
        cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    assert (work / "models" / "demo" / "CURRENT").exists(), "configs/demo.toml must publish into models/"
    return work / "models"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("doc", RUN_FILES, ids=[str(f.relative_to(REPO)) for f in RUN_FILES])
def test_examples_run(doc: Path, tmp_path: Path, demo_models: Path) -> None:
    """The file's bash and python examples run in order against a real server; answers match."""
    work, env = _checkout(tmp_path)
    shutil.copytree(demo_models, work / "models")
    started = time.monotonic()
    with gunicorn(work / "models", tmp_path / "gunicorn.log") as (base, _proc):
        port = int(base.rsplit(":", 1)[1])
        for block in (b for b in blocks(doc) if b.lang in RUN):
            t = time.monotonic()
            done = run_example(block, work, env, port)
            assert done.returncode == 0, _report(block, done, port)
            old_names = [ln for ln in done.stderr.splitlines() if re.search(r"\.\w+ is now \w+\.\w+", ln)]
            assert not old_names, f"{block.where} uses an old config name:\n" + "\n".join(old_names)
            if block.answer is not None:
                problems = answer_problems(block.answer, done.stdout)
                assert not problems, f"{block.where}: the answer differs from {block.answer.where}:\n" + (
                    "\n".join(problems)
                )
            print(f"{block.where}: ok in {time.monotonic() - t:.1f}s  {block.title}")
    print(f"{doc.relative_to(REPO)}: {time.monotonic() - started:.1f}s")


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.where for b in NOT_RUN])
def test_example_not_run(block: Block) -> None:
    """A ```console block (or an untagged one that reads like a command): shown, not run.
    Reported as a skip with its reason."""
    reason = not_run_reason(block)
    assert reason is not None, f"{block.where}: a command without a known reason not to run it (see NOT_RUN)"
    pytest.skip(f"{block.where} not run ({reason}): {block.title}")


def test_bash_examples_only_where_they_are_run() -> None:
    """A ```bash block in a Markdown file outside the scanned set would never run: refuse it."""
    scanned = {f.resolve() for f in FILES}
    stray = [
        b.where for f in markdown_files() if f.resolve() not in scanned for b in blocks(f) if b.lang in RUN
    ]
    assert not stray, f"examples in files the docs test does not scan: {stray}"


def test_blocks_follow_the_convention() -> None:
    problems: list[str] = []
    for b in ALL:
        if b.lang in SHELL_TAGS_REFUSED:
            problems.append(
                f"{b.where}: tag shell examples ```bash (run by the test) or ```console (not run)"
            )
        elif b.lang == "console" and not_run_reason(b) is None:
            problems.append(f"{b.where}: a ```console block matches no reason in docs_blocks.NOT_RUN")
        elif is_not_run(b) and not_run_reason(b) is None:
            problems.append(f"{b.where}: looks like a command; tag it ```bash (to run it) or ```console")
        if b.lang == "bash":
            problems += curl_problems(b)
    assert not problems, "\n".join(problems)
    runnable = sum(b.lang in RUN for b in ALL)
    print(f"{len(ALL)} blocks in {len(FILES)} files: {runnable} run, {len(NOT_RUN)} not run")


def test_toml_examples_are_valid_configs() -> None:
    """A ```toml block is (part of) a training config; [data] path defaults to the demo data."""
    from training.config import RENAMED, Config

    for b in (b for b in ALL if b.lang == "toml"):
        raw = tomllib.loads(b.text)
        old = [f"{s}.{k}" for (s, k) in RENAMED if k in raw.get(s, {})]
        assert not old, f"{b.where}: old names {old}"
        raw.setdefault("data", {}).setdefault("path", str(REPO / "data" / "airline.csv"))
        Config.model_validate(raw)


def test_the_harness_catches_a_broken_example(tmp_path: Path) -> None:
    """The rules bite: a failing command fails, an answer of another shape is reported."""
    work, env = _checkout(tmp_path)
    broken = Block(Path("x.md"), 1, "bash", "true\nfalse\necho not reached\n")
    assert run_example(broken, work, env, 8000).returncode != 0
    shown = Block(Path("x.md"), 5, "json", '{"a": [1, 2, 3], "b": "x"}\n')
    assert answer_problems(shown, '{"a": [1, 2, 3], "b": "y"}') == []
    assert answer_problems(shown, '{"a": [1, 2], "b": "y"}')
    assert answer_problems(shown, '{"a": [1, 2, 3]}')
    assert answer_problems(shown, 'a table first\n{"a": [1, 2, 3], "b": "y"}') == []
    http = Block(Path("x.md"), 5, "http", 'HTTP/1.1 422 UNPROCESSABLE ENTITY\n\n{"error": {"code": "x"}}\n')
    assert answer_problems(http, 'HTTP/1.1 200 OK\r\n\r\n{"error": {"code": "y"}}')
    bench = Block(Path("x.md"), 1, "", ".venv/bin/python bench/accuracy.py\n")
    assert is_not_run(bench) and not_run_reason(bench)  # untagged, but a benchmark: shown, not run
    untagged = Block(Path("x.md"), 1, "text", ".venv/bin/seqcast train --config configs/x.toml\n")
    assert is_not_run(untagged) and not_run_reason(untagged) is None  # would escape: the convention fails
    assert not is_not_run(Block(Path("x.md"), 1, "text", "demo\n * 2026...  lstm/direct\n"))
    quiet = Block(Path("x.md"), 1, "bash", "curl -s localhost:8000/healthz\n")
    assert curl_problems(quiet)
    assert not curl_problems(Block(Path("x.md"), 1, "bash", "x=$(curl -sf localhost:8000/healthz | head)\n"))
