"""Same-name overrides: a shipped folder merged with an admin folder by file name, in lexical order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One effective file: its name, where it is, and whether it is shipped, overridden or added."""

    name: str
    path: Path
    origin: Origin


class Origin(StrEnum):
    """Where an effective file comes from: shipped, an admin file of the same name, or a new admin file."""

    SHIPPED = "shipped"
    OVERRIDDEN = "overridden"
    ADDED = "added"


def merge_by_name(shipped: Path, admin: Path) -> list[Entry]:
    """Files of SHIPPED and ADMIN by name; an ADMIN file replaces the shipped one of the same name."""
    found: dict[str, Entry] = {}
    for folder, origin in ((shipped, Origin.SHIPPED), (admin, Origin.ADDED)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") or path.name.endswith(("~", ".dpkg-old", ".dpkg-dist", ".md")):
                continue
            if not path.is_file():
                continue
            if origin is Origin.ADDED and path.name in found:
                found[path.name] = Entry(path.name, path, Origin.OVERRIDDEN)
            else:
                found[path.name] = Entry(path.name, path, origin)
    return [found[name] for name in sorted(found)]
