"""Plans: what should change on disk and in services, computed purely, then applied (the only executor)."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from kestrel.sysroot import Sysroot, atomic_write

logger = logging.getLogger(__name__)


class Action(StrEnum):
    RELOAD = "reload"
    RESTART = "restart"


@dataclass(frozen=True)
class ServiceAction:
    service: str
    action: Action
    reason: str


@dataclass(frozen=True)
class Desired:
    """A file Kestrel wants: its content, mode, and what to do to which service when it changes."""

    path: str
    content: bytes
    mode: int | None = 0o644  # None: keep the mode the file has (files Kestrel shares, like /etc/hosts)
    on_change: tuple[str, Action] | None = None


@dataclass(frozen=True)
class FileChange:
    path: str
    old: bytes | None
    new: bytes | None  # None: delete
    mode: int = 0o644

    @property
    def verb(self) -> str:
        return "Removed" if self.new is None else ("Created" if self.old is None else "Wrote")


@dataclass
class Plan:
    changes: list[FileChange] = field(default_factory=list)
    actions: list[ServiceAction] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.changes or self.actions or self.directories)

    def add_action(self, action: ServiceAction) -> None:
        """One action per service; a restart covers a reload."""
        for i, have in enumerate(self.actions):
            if have.service == action.service:
                if have.action is Action.RELOAD and action.action is Action.RESTART:
                    self.actions[i] = action
                return
        self.actions.append(action)


def plan_files(
    root: Sysroot,
    desired: Iterable[Desired],
    owned: Iterable[tuple[str, str]] = (),
    directories: Iterable[str] = (),
) -> Plan:
    """Compare DESIRED with disk. Files under an OWNED (folder, glob) that are not desired are removed."""
    plan = Plan()
    desired = list(desired)
    wanted = {d.path for d in desired}
    for d in desired:
        old = root.read(d.path)
        have = _mode(root.path(d.path)) if old is not None else None
        mode = d.mode if d.mode is not None else (have or 0o644)
        if old != d.content or have != mode:
            plan.changes.append(FileChange(d.path, old, d.content, mode))
            if d.on_change:
                service, action = d.on_change
                plan.add_action(ServiceAction(service, action, f"{d.path} changed"))
    for folder, pattern in owned:
        real = root.path(folder)
        if not real.is_dir():
            continue
        for entry in sorted(real.iterdir()):
            sys_path = f"{folder.rstrip('/')}/{entry.name}"
            if entry.is_file() and fnmatch.fnmatch(entry.name, pattern) and sys_path not in wanted:
                plan.changes.append(FileChange(sys_path, entry.read_bytes(), None))
    plan.directories = [d for d in directories if not root.path(d).is_dir()]
    return plan


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def apply_changes(root: Sysroot, plan: Plan) -> None:
    """Write the plan's files and folders (not its service actions: services/ does those)."""
    for d in plan.directories:
        root.path(d).mkdir(parents=True, exist_ok=True)
        logger.info(f"Created {root.sys(d)}/")
    for c in plan.changes:
        target = root.path(c.path)
        if c.new is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        else:
            atomic_write(target, c.new, c.mode)
        logger.info(f"{c.verb} {root.sys(c.path)}")


def describe_plan(root: Sysroot, plan: Plan, diff: bool) -> str:
    """What --dry-run prints: one line per change and action, with unified diffs when asked."""
    out: list[str] = []
    for d in plan.directories:
        out.append(f"Would create {root.sys(d)}/")
    for c in plan.changes:
        verb = {"Created": "create", "Wrote": "write", "Removed": "remove"}[c.verb]
        out.append(f"Would {verb} {root.sys(c.path)}")
        if diff:
            out.extend(unified_diff(root.sys(c.path), c.old, c.new))
    for a in plan.actions:
        out.append(f"Would {a.action} {a.service} ({a.reason})")
    if not out:
        out.append("Nothing to do")
    return "\n".join(out) + "\n"


def unified_diff(name: str, old: bytes | None, new: bytes | None) -> list[str]:
    try:
        a = (old or b"").decode("utf-8").splitlines(keepends=True)
        b = (new or b"").decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return [f"Binary file {name} differs"]
    lines = difflib.unified_diff(a, b, "/dev/null" if old is None else f"a{name}",
                                 "/dev/null" if new is None else f"b{name}")
    return [line.rstrip("\n") for line in lines]
