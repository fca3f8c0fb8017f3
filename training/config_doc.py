"""Write ``docs/configuration.md`` from the config's pydantic models: ``python -m training.config_doc``.

The descriptions live beside the fields (``training.config``, and the
``[model]`` section's ``NetworkSpec`` in the bundle contract); this page is
generated from them, and a test fails when the committed page differs.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from training.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

HEADER = """\
# Configuration reference

Generated from the config models by `python -m training.config_doc` (a test
fails when this page and the code differ): edit the `description` of a field,
not this page.

A training config is one TOML file. Only `[data] path` is required; every other
key has the default shown. Paths written in the file are relative to the file;
paths on the command line are relative to the working directory. Any key can be
overridden on the command line with `--set section.key=value` (the value is a
TOML literal: `--set model.hidden=32`, `--set data.targets='["x", "y"]'`).

The resolved config, less `[machine]`, is stored in every bundle's manifest
(`training_config`), so `seqcast retrain` can rebuild the same recipe on fresh
data. Older key names are still read, with a warning: `model.skip_lag`,
`model.skip_damping`, `model.skip_gate` (now `model.base_lag`,
`model.base_damping`, `model.correction_gate`), `export.tolerance` (now
`export.parity_tolerance`) and `train.device`, `train.threads`,
`train.progress` (now in `[machine]`).
"""


def _type_name(annotation: Any) -> str:
    """A short, readable type: ``int | None``, ``"window" | "standard"``, ``list[str]``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(
            f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in typing.get_args(annotation)
        )
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"list of {_type_name(item).strip('`')}"
    if annotation is type(None):
        return "`none`"
    if isinstance(annotation, type):
        return {"Path": "path", "str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _section(name: str, model: type[BaseModel], note: str | None) -> list[str]:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    lines = [f"## [{name}]", "", doc + (f" Optional: {note}." if note else ""), ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        if not description:
            raise ValueError(f"{name}.{key} has no description")
        lines.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return [*lines, ""]


def render() -> str:
    """The whole page."""
    lines = [HEADER]
    for name, field in Config.model_fields.items():
        options = typing.get_args(field.annotation) or (field.annotation,)
        model = next(o for o in options if isinstance(o, type) and issubclass(o, BaseModel))
        optional = type(None) in options
        lines += _section(name, model, field.description if optional else None)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    DOC.write_text(render())
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
