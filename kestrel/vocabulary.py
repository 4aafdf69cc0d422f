"""The one JSON vocabulary of every program's --json: a thing's own name is `name`, times are ISO-8601 UTC
(2026-12-02T14:53:38Z), sizes are bytes (`size`, `*_bytes`), durations seconds (`seconds`, `*_seconds`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

KEY = re.compile(r"[a-z][a-z0-9_]*\Z")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
# a value that is a time and nothing else (prose that mentions one is not checked)
LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?(\.\d+)?( ?(Z|UTC|[+-]\d\d:?\d\d))?\Z")
# keys that hold a time; any other key ending in _at or _since does too
TIME_KEYS = frozenset({"built", "first_seen", "last_seen", "since", "started", "checked"})
# units other than bytes and seconds, in a key, or an amount without its unit: say it in bytes or seconds
OTHER_UNITS = re.compile(r".*_(kb|mb|gb|kib|mib|gib|ms|minutes|hours|days)\Z|(memory|disk|ram|timeout)\Z")
# what a record's own name must not be called (other things it refers to keep their kind: "image": "default")
NOT_NAME = frozenset({"node", "node_name", "hostname", "host", "user_name", "image_name", "vm"})


def iso_utc(at: float | str | None) -> str | None:
    """AT (seconds since the epoch, or an ISO-8601 time with an offset) as ISO-8601 UTC to the second, with Z;
    a time without an offset is taken as UTC."""
    if at is None or at == "":
        return None
    if isinstance(at, str):
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith(("_at", "_since"))


def problems(data: Any, where: str = "$") -> Iterator[str]:
    """Where DATA (a --json output, parsed) breaks the vocabulary, one sentence each."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield from problems(item, f"{where}[{i}]")
        return
    if not isinstance(data, dict):
        if isinstance(data, str) and LOOKS_LIKE_TIME.match(data) and not TIME.match(data):
            yield f"{where}: {data!r} is a time but not ISO-8601 UTC (YYYY-MM-DDTHH:MM:SSZ)"
        return
    if "name" not in data and (found := sorted(NOT_NAME & data.keys())):
        yield f"{where}: the record's own name is `name`, not {found[0]!r}"
    for key, value in data.items():
        at = f"{where}.{key}"
        problem = _key_problem(where, key, value)
        if problem:
            yield f"{at}: {problem}"
        else:
            yield from problems(value, at)


def _key_problem(where: str, key: Any, value: Any) -> str | None:
    if not isinstance(key, str) or not KEY.match(key):
        return None if _is_data_key(where, key) else "a key is lowercase snake_case"
    if OTHER_UNITS.match(key):
        return "say it in bytes (*_bytes) or seconds (*_seconds)"
    if value is None:
        return None
    if is_time_key(key) and not (isinstance(value, str) and TIME.match(value)):
        return f"{value!r} is not an ISO-8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)"
    if (key == "size" or key.endswith("_bytes")) and not _whole(value):
        return f"{value!r} is not a number of bytes"
    if (key == "seconds" or key.endswith("_seconds")) and not _number(value):
        return f"{value!r} is not a number of seconds"
    return None


def _is_data_key(where: str, key: Any) -> bool:
    # maps keyed by data rather than by field (used_by: {VERSION: [...]}, versions, counters by name) are fine
    return isinstance(key, str) and where.rsplit(".", 1)[-1] in DATA_MAPS


DATA_MAPS = frozenset({"used_by", "versions", "services", "nodes", "counters"})


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
