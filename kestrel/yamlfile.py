"""Strict YAML loading with errors located as FILE:LINE: FIELD: why.

YAML 1.2 (ruamel.yaml), so an unquoted MAC stays a string and `no` stays a string, and a duplicate key is
an error rather than silently keeping the last value (PyYAML's default loader does both wrong).

Hostile documents are refused before they are built, from the event stream (no recursion, linear time):
control characters and NUL, nesting deeper than MAX_DEPTH, merge keys, and aliases whose expansion would
exceed MAX_NODES (a 414-byte "billion laughs" would otherwise take minutes and gigabytes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, MappingStartEvent, ScalarEvent

from kestrel.errors import InputError
from kestrel.inputfile import read_input

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 32  # a config is 3 levels deep
MAX_NODES = 100_000  # values after alias expansion
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f\ufeff\ufffe\uffff]")


def load_yaml(path: Path, text: str | None = None) -> Any:
    """Parse PATH (or TEXT, reported as PATH) as YAML 1.2, refusing duplicate keys and hostile documents."""
    if text is None:
        try:
            text = read_input(path).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: cannot read: not UTF-8 ({e.reason} at byte {e.start})") from None
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise InputError(f"{path}:{line}: (yaml): control character {bad.group()!r} (NUL and the like) not allowed")
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        _check_events(path, yaml.parse(text))
        return yaml.load(text)
    except DuplicateKeyError as e:
        mark = e.problem_mark
        key = _first_quoted(str(e.problem)) or "?"
        raise InputError(f"{path}:{mark.line + 1}: {key}: duplicate key") from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise InputError(f"{path}:{line}: (yaml): {e.problem or e.context}") from None
    except (YAMLError, RecursionError) as e:
        raise InputError(f"{path}: (yaml): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _check_events(path: Path, events: Any) -> None:
    """Refuse deep nesting, merge keys and alias bombs, counting each anchored node's expanded size."""
    sizes: dict[str, int] = {}
    open_: list[list[Any]] = []  # per open collection: [anchor, size so far, is a mapping, items seen]
    total = 0
    for event in events:
        line = event.start_mark.line + 1 if event.start_mark else 0
        tag = getattr(event, "tag", None)
        if tag is not None:  # rt mode keeps even !!str as a TaggedScalar: plain YAML only
            raise InputError(f"{path}:{line}: (yaml): tag {str(tag)!r} is not supported")
        if isinstance(event, CollectionStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise InputError(f"{path}:{line}: (yaml): nested deeper than {MAX_DEPTH} levels")
            _count_item(open_)
            open_.append([event.anchor, 1, isinstance(event, MappingStartEvent), 0])
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, size, _, _ = open_.pop()
            if anchor:
                sizes[anchor] = size
            size_added = size
        elif isinstance(event, ScalarEvent):
            if _is_merge_key(open_, event):
                raise InputError(f"{path}:{line}: (yaml): merge keys ('<<') are not supported; write the keys out")
            _count_item(open_)
            if event.anchor:
                sizes[event.anchor] = 1
            size_added = 1
        elif isinstance(event, AliasEvent):
            _count_item(open_)
            size_added = sizes.get(event.anchor, 1)
        else:
            continue
        if open_:
            open_[-1][1] += size_added
        total += size_added if not open_ else 0
        if size_added > MAX_NODES or (open_ and open_[-1][1] > MAX_NODES) or total > MAX_NODES:
            raise InputError(f"{path}:{line}: (yaml): aliases expand to more than {MAX_NODES} values")


def _count_item(open_: list[list[Any]]) -> None:
    if open_:
        open_[-1][3] += 1


def _is_merge_key(open_: list[list[Any]], event: ScalarEvent) -> bool:
    """A plain '<<' in key position of a mapping (items alternate key, value)."""
    return bool(open_ and open_[-1][2] and open_[-1][3] % 2 == 0 and event.value == "<<" and event.style is None)


def load_model(model: type[M], path: Path, text: str | None = None, context: dict[str, Any] | None = None) -> M:
    """Load PATH as YAML and validate it against MODEL (its validators see CONTEXT); the first error becomes a
    located InputError."""
    data = load_yaml(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}:1: (top): expected a mapping of keys, got {_kind(data)}")
    try:
        return model.model_validate(_plain(data), context=context)
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
    path = _parse_path(key) if sep else None
    if path and isinstance(node, dict) and path[0] in node:
        return (*loc, *path), rest
    return loc, why


_PATH = re.compile(r"[A-Za-z_]\w*(?:\[[0-9]+\]|\.[A-Za-z_]\w*)*")
_PATH_PART = re.compile(r"([A-Za-z_]\w*)|\[([0-9]+)\]")


def _parse_path(text: str) -> tuple[Any, ...] | None:
    """'servers[1].name' as ('servers', 1, 'name'); None if TEXT is not such a path."""
    if not _PATH.fullmatch(text):
        return None
    return tuple(m.group(1) or int(m.group(2)) for m in _PATH_PART.finditer(text))


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
