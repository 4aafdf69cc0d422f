"""Strict YAML loading with errors located as FILE:LINE: FIELD: why.

YAML 1.2 (ruamel.yaml), so an unquoted MAC stays a string and `no` stays a string, and a duplicate key is
an error rather than silently keeping the last value (PyYAML's default loader does both wrong).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from kestrel.errors import InputError

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path, text: str | None = None) -> Any:
    """Parse PATH (or TEXT, reported as PATH) as YAML 1.2, refusing duplicate keys."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read: {e}") from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except DuplicateKeyError as e:
        mark = e.problem_mark
        key = _first_quoted(str(e.problem)) or "?"
        raise InputError(f"{path}:{mark.line + 1}: {key}: duplicate key") from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise InputError(f"{path}:{line}: (yaml): {e.problem or e.context}") from None


def load_model(model: type[M], path: Path, text: str | None = None) -> M:
    """Load PATH as YAML and validate it against MODEL; the first error becomes a located InputError."""
    data = load_yaml(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}:1: (top): expected a mapping of keys, got {_kind(data)}")
    try:
        return model.model_validate(_plain(data))
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        loc, why = _refine(data, tuple(err["loc"]), _why(err))
        raise InputError(f"{path}:{_line_of(data, loc)}: {_dotted(loc)}: {why}") from None


def _refine(data: Any, loc: tuple[Any, ...], why: str) -> tuple[tuple[Any, ...], str]:
    """A model-level check says 'FIELD: why' (it spans fields): locate it at that FIELD."""
    node = data
    for part in loc:
        node = node[part] if isinstance(node, dict | list) and _has(node, part) else None
    key, sep, rest = why.partition(": ")
    if sep and isinstance(node, dict) and key in node:
        return (*loc, key), rest
    return loc, why


def _has(node: Any, part: Any) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (pydantic wants plain types)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _line_of(data: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest part of LOC that exists in the parsed document."""
    line = 1
    node = data
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "tagged-union")):
            out += ("." if out else "") + str(part)
    return out or "(top)"


def _why(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    got = err.get("input")
    suffix = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    return msg[0].lower() + msg[1:] + suffix


def _kind(value: Any) -> str:
    for kind, text in ((list, "a list"), (str, "a string"), (bool, "a boolean"), (int, "a number")):
        if isinstance(value, kind):
            return text
    return "a value"


def _first_quoted(text: str) -> str | None:
    start = text.find('"')
    end = text.find('"', start + 1)
    return text[start + 1 : end] if start >= 0 and end > start else None
