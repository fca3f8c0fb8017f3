"""The fenced code blocks of the Markdown docs, sorted into what the docs test runs and what it does not.

The convention (see ``tests/test_docs_examples.py``):

- ```` ```bash ```` and ```` ```python ```` blocks are examples: the test runs every one.
- ```` ```console ```` blocks are commands the test does not run; each must match one of
  ``NOT_RUN`` (the reason is reported with the skip).
- A ```` ```json ```` or ```` ```http ```` block right after an example is the answer it
  shows: the test compares its shape (and the status line of ``http``).
- ```` ```toml ```` blocks are config examples: each must load as a training config.
- Anything else (``text``, ``yaml``, untagged) is shown only. One that looks like a command
  counts as a ```` ```console ```` block: it must match a reason in ``NOT_RUN`` (so an example
  cannot escape the test by losing its tag).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

RUN = ("bash", "python")
ANSWER = ("json", "http")
SHELL_TAGS_REFUSED = ("sh", "shell", "zsh", "shell-session", "console-session")

# Why a ```console block is not run: every reason whose pattern the block matches.
NOT_RUN: tuple[tuple[str, str], ...] = (
    (r"\bmake run\b|\bgunicorn\b", "serves until stopped (the test starts its own gunicorn)"),
    (r"\bmake (test|check|lint)\b", "runs the test suite itself"),
    (r"\b(docker|podman|compose)\b|container-smoke", "needs a container engine"),
    (r"\bbench/|\bwrk\b|\bmake bench|\bst run\b", "a benchmark: minutes of load on a quiet machine"),
    (r"\b(apt-get|pip install)\b", "installs software"),
    (r"\bgit clone\b", "needs the network"),
    (r"\btorchrun\b", "starts several training processes (tests/test_distributed.py runs it)"),
    (r"--device cuda\b", "needs a CUDA GPU (bench/gpu_check.sh runs the GPU checks)"),
)

# The first line of a shown-only block must not look like one of these commands.
COMMAND_LIKE = re.compile(
    r"^(\$ |\.venv/bin/|curl |make |seqcast |docker |podman |python3? |pip |cd |export |sudo |"
    r"apt-get |kubectl |bash |SEQCAST_\w+=)"
)


@dataclass(frozen=True)
class Block:
    path: Path  # relative to the repository
    line: int  # of the opening fence, from 1
    lang: str
    text: str
    answer: Block | None = None  # the ```json / ```http block right after an example

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def title(self) -> str:
        first = next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")
        return first if len(first) <= 70 else first[:67] + "..."


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)[^`]*$")


def blocks(path: Path) -> list[Block]:
    """Every fenced block of one Markdown file, each example with the answer block after it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[tuple[int, str, str, int]] = []  # (line, lang, text, line after the closing fence)
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        found.append((i + 1, lang, "\n".join(body) + "\n", j + 1))
        i = j + 1
    rel = path.resolve().relative_to(REPO)
    out: list[Block] = []
    for k, (line, lang, text, end) in enumerate(found):
        answer = None
        if lang in RUN and k + 1 < len(found):
            nline, nlang, ntext, _ = found[k + 1]
            between = lines[end : nline - 1]
            if nlang in ANSWER and all(not s.strip() for s in between):
                answer = Block(rel, nline, nlang, ntext)
        out.append(Block(rel, line, lang, text, answer))
    return out


def scanned_files() -> list[Path]:
    """The Markdown files whose examples the test runs: README.md, docs/*.md, data/README.md."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "data" / "README.md"]
    return [f for f in files if f.exists()]


def markdown_files() -> list[Path]:
    """Every Markdown file of the checkout that git tracks or would track."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "--", "*.md"],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
        ).stdout.split()  # fmt: skip
        return [REPO / p for p in listed if (REPO / p).is_file()]
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):  # not a git checkout
        return [p for p in REPO.rglob("*.md") if not any(part.startswith(".") for part in p.parts)]


def looks_like_command(block: Block) -> bool:
    """A shown-only block whose first line (comments aside) reads like a command."""
    first = next((ln for ln in block.text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    return bool(COMMAND_LIKE.match(first))


def is_not_run(block: Block) -> bool:
    """A command the reader may type that the test does not run: ```console, or an untagged block
    that looks like one."""
    if block.lang == "console":
        return True
    return block.lang not in (*RUN, *ANSWER, "toml") and looks_like_command(block)


def not_run_reason(block: Block) -> str | None:
    """Why the block is not run (``; ``-joined when several reasons apply), or None if none does."""
    reasons = [reason for pattern, reason in NOT_RUN if re.search(pattern, block.text)]
    return "; ".join(reasons) or None


def _without_heredocs(text: str) -> str:
    out, end = [], None
    for line in text.splitlines():
        if end is not None:
            end = None if line.strip() == end else end
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        end = m.group(1) if m else None
        out.append(line)
    return "\n".join(out)


def curl_calls(text: str) -> list[list[str]]:
    """The options and arguments of each ``curl`` in a shell block."""
    if "curl" not in text:
        return []
    lexer = shlex.shlex(_without_heredocs(text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    calls: list[list[str]] = []
    for i, token in enumerate(tokens):
        if token == "curl" or token.endswith("/curl"):
            args: list[str] = []
            for t in tokens[i + 1 :]:
                if t and all(c in "|;&()<>" for c in t):
                    break
                args.append(t)
            calls.append(args)
    return calls


def _has_flag(args: list[str], short: str, long: tuple[str, ...]) -> bool:
    for a in args:
        if a in long:
            return True
        if re.fullmatch(r"-[A-Za-z]+", a) and short in a[1:]:
            return True
    return False


def curl_problems(block: Block) -> list[str]:
    """Each curl must fail on an HTTP error (-f), or show the status it gets (-i with an ```http answer)."""
    problems = []
    for args in curl_calls(block.text):
        fails = _has_flag(args, "f", ("--fail", "--fail-with-body"))
        shows = (
            _has_flag(args, "i", ("--include",)) and block.answer is not None and block.answer.lang == "http"
        )
        if not (fails or shows):
            problems.append(
                f"{block.where}: curl {' '.join(args[:3])} ...: add -f (an HTTP error then fails the "
                "example), or -i with an ```http answer block showing the status"
            )
    return problems


# -- comparing an answer with the one shown --------------------------------------


def trailing_json(text: str) -> list[Any]:
    """The JSON documents that end ``text`` (an example may print other lines before them)."""
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("{", "[")):
            try:
                return json_documents("\n".join(lines[i:]))
            except ValueError:
                continue
    return json_documents(text)  # raises: no JSON at the end


def json_documents(text: str) -> list[Any]:
    """Every JSON document in ``text``, one after the other (whitespace between)."""
    decoder, docs, i, text = json.JSONDecoder(), [], 0, text.strip()
    while i < len(text):
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
        while i < len(text) and text[i].isspace():
            i += 1
    return docs


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def shape_problems(shown: Any, got: Any, at: str = "$") -> list[str]:
    """Where ``got`` differs in shape from ``shown``: object keys, value types, null-ness, and the
    length of lists of numbers (a forecast's steps); the values themselves may differ."""
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return [f"{at}: expected an object, got {type(got).__name__}"]
        if set(shown) != set(got):
            return [f"{at}: keys {sorted(got)}, the doc shows {sorted(shown)}"]
        return [p for k in shown for p in shape_problems(shown[k], got[k], f"{at}.{k}")]
    if isinstance(shown, list):
        if not isinstance(got, list):
            return [f"{at}: expected a list, got {type(got).__name__}"]
        if bool(shown) != bool(got):
            return [f"{at}: {len(got)} items, the doc shows {len(shown)}"]
        if shown and all(_is_number(x) for x in shown) and len(shown) != len(got):
            return [f"{at}: {len(got)} numbers, the doc shows {len(shown)}"]
        return [
            p
            for i, g in enumerate(got)
            for p in shape_problems(shown[min(i, len(shown) - 1)], g, f"{at}[{i}]")
        ]
    if shown is None:
        return [] if got is None else [f"{at}: {got!r}, the doc shows null"]
    if isinstance(shown, bool):
        return [] if isinstance(got, bool) else [f"{at}: {got!r}, the doc shows a boolean"]
    if _is_number(shown):
        return [] if _is_number(got) else [f"{at}: {got!r}, the doc shows a number"]
    return [] if isinstance(got, str) else [f"{at}: {got!r}, the doc shows a string"]


def _http(text: str) -> tuple[int, dict[str, str], str]:
    head, _, body = text.replace("\r\n", "\n").strip().partition("\n\n")
    status_line, *header_lines = head.splitlines()
    m = re.match(r"HTTP/[\d.]+ (\d{3})", status_line)
    if not m:
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    headers = dict(h.split(":", 1) for h in header_lines if ":" in h)
    return int(m.group(1)), {k.strip().lower(): v.strip() for k, v in headers.items()}, body


def answer_problems(answer: Block, stdout: str) -> list[str]:
    """How an example's output differs from the answer block the doc shows after it."""
    problems: list[str] = []
    try:
        if answer.lang == "http":
            status, headers, body = _http(answer.text)
            got_status, got_headers, got_body = _http(stdout)
            missing = sorted(set(headers) - set(got_headers))
            problems += [f"status {got_status}, the doc shows {status}"] if got_status != status else []
            problems += [f"headers missing: {missing}"] if missing else []
            shown, got = json_documents(body), json_documents(got_body)
        else:
            shown, got = json_documents(answer.text), trailing_json(stdout)
    except ValueError as exc:
        return [f"cannot compare with {answer.where}: {exc}\n--- output ---\n{stdout}"]
    if len(shown) != len(got):
        return [f"{len(got)} JSON documents, {answer.where} shows {len(shown)}\n--- output ---\n{stdout}"]
    for s, g in zip(shown, got, strict=True):
        problems += shape_problems(s, g)
    return problems
