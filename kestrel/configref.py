"""docs/config.md, the reference of every key of kestrel.yaml and of image definitions, made from the config model
(its field docstrings, types, bounds and defaults): `python -m kestrel.configref docs/config.md`."""

from __future__ import annotations

import enum
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kestrel.config import CONFIG_PATH, DEFINITIONS_DIR, Config, ImageDefinition

HEADER = """# Configuration reference

Generated from Kestrel's config model (`kestrel/config.py`) by `python -m kestrel.configref docs/config.md`;
a test fails when it is out of date. Every key is optional: the default applies when it is absent. A wrong key or
value stops every program with one line naming the file, line and key (exit 2).
"""


class MissingDoc(Exception):
    """A key of the model has no docstring: the reference would not explain it."""


def keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every key of MODEL, sub-models walked (`network.address`, `switch.servers[].name`), in declaration order."""
    found = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        found.append((key, info))
        sub, many = _sub_model(info.annotation)
        if sub is not None:
            found += keys(sub, f"{key}[]." if many else f"{key}.")
    return found


def _sub_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (itself, optional, or a list of them) and whether it is a list."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
        if typing.get_origin(arg) is list:
            inner = typing.get_args(arg)[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
    return None, False


def _type(annotation: Any) -> str:
    """A reader's name of a field's type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        shown = [_type(a) for a in args if a is not type(None)]
        return " or ".join(shown) + (" or unset" if type(None) in args else "")
    if origin is tuple:
        return f"[{', '.join(_type(a) for a in args)}]"
    if origin is list:
        return f"list of {_type(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    names = {"str": "text", "int": "integer", "bool": "boolean", "IPv4Address": "IPv4 address"}
    names |= {"IPv4Interface": "IPv4 address/prefix", "IPv6Network": "IPv6 prefix", "IPv6Address": "IPv6 address"}
    return names.get(getattr(annotation, "__name__", ""), str(annotation))


def _bounds(info: FieldInfo) -> str:
    found = {type(m): m for m in info.metadata}
    for arg in typing.get_args(info.annotation):  # Annotated[int, Field(ge=..)] | None keeps them inside
        for m in getattr(arg, "__metadata__", ()):
            for inner in getattr(m, "metadata", [m]):
                found.setdefault(type(inner), inner)
    parts = []
    if Ge in found and Le in found:
        parts.append(f"{found[Ge].ge}–{found[Le].le}")
    if MaxLen in found:
        parts.append(f"at most {found[MaxLen].max_length} characters")
    return f" ({', '.join(parts)})" if parts else ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default if info.default is not PydanticUndefined else None
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple | list):
        value = [str(v) if not isinstance(v, int | bool) else v for v in value]
    elif not isinstance(value, int | bool | str):
        value = str(value)
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def _table(model: type[BaseModel]) -> list[str]:
    lines = ["| key | type | default | what |", "|---|---|---|---|"]
    for key, info in keys(model):
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        if not doc:
            raise MissingDoc(f"{model.__name__}: key {key} has no docstring in kestrel/config.py")
        type_ = _type(info.annotation) + _bounds(info)
        lines.append(f"| `{key}` | {type_} | {_default(info)} | {doc} |")
    return lines


def render() -> str:
    return "\n".join(
        [
            HEADER,
            f"## kestrel.yaml (`{CONFIG_PATH}`)",
            "",
            "The shipped default, with comments, is `etc-kestrel/kestrel.yaml` in the source (installed as "
            f"`{CONFIG_PATH}`). After a change: `kestrel-reconfigure --all` (`--dry-run --diff` shows what it "
            "would do).",
            "",
            *_table(Config),
            "",
            f"## Image definitions (`{DEFINITIONS_DIR}/NAME.yaml`)",
            "",
            "The admin's definition of NAME before the shipped `images/NAME.yaml`. After a change: "
            "`kestrel-images build NAME`. Beside it, `NAME.apt` holds what `kestrel-apt` installed and removed "
            "(`install PKG` / `remove PKG` lines), applied again by every build.",
            "",
            *_table(ImageDefinition),
            "",
        ]
    )


def main() -> None:
    text = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
