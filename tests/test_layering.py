"""The drawing of imports: trainer -> contract <- service, nothing else crossing.

Read from the source (``ast``), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imports(folder: Path) -> dict[str, set[str]]:
    """Module file (relative to the repo) -> every module it imports, anywhere in the file."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(REPO))] = names
    return found


def crossing(found: dict[str, set[str]], allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in found.items()
        for name in names
        if name.startswith(forbidden) and not name.startswith(allowed)
    )


def test_the_trainer_reaches_the_service_only_through_the_contract():
    # `from service.bundle import store` is the contract; `from service import api` is not.
    found = imports(REPO / "training")
    bad = crossing(found, ("service.bundle",), ("service",))
    assert bad == [], bad


def test_the_service_never_imports_the_trainer_or_torch():
    found = imports(REPO / "service")
    assert crossing(found, (), ("training", "torch", "onnx.", "pandas")) == []


def test_the_contract_needs_neither_flask_nor_the_rest_of_the_service():
    found = imports(REPO / "service" / "bundle")
    # service.bundle.* is itself; anything else under service (flask views, settings) is not the contract
    bad = crossing(found, ("service.bundle",), ("service", "flask", "werkzeug", "gunicorn", "training"))
    assert bad == [], bad


def test_the_checker_sees_a_crossing():
    """The checker itself can fail: a made-up import is reported."""
    found = {"training/x.py": {"service.api", "service.bundle.store"}}
    assert crossing(found, ("service.bundle",), ("service",)) == ["training/x.py imports service.api"]
