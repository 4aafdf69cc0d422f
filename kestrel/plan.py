"""Plans: what should change on disk and in services, computed purely, then applied (the only executor)."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import logging
import os
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.sysroot import TEMP_SUFFIX, Sysroot, atomic_write, file_owner

logger = logging.getLogger(__name__)


class Action(StrEnum):
    """What a changed file asks of its service: a reload keeps it running, a restart does not."""

    RELOAD = "reload"
    RESTART = "restart"


@dataclass(frozen=True)
class ServiceAction:
    """ACTION of SERVICE, and the REASON shown with it (which file changed). A stopped systemd service is started
    (and enabled) unless START is false (its files went away)."""

    service: str
    action: Action
    reason: str
    start: bool = True


@dataclass(frozen=True)
class Desired:
    """A file Kestrel wants: its content, mode, and what to do to which service when it changes."""

    path: str
    content: bytes
    mode: int | None = 0o644  # None: keep the mode the file has (files Kestrel shares, like /etc/hosts)
    on_change: tuple[str, Action] | None = None
    owner: tuple[int, int] | None = None  # (uid, gid); None: whoever runs Kestrel (root)
    secret: bool = False  # a --diff never prints it (private keys)


@dataclass(frozen=True)
class FileChange:
    """A file written whole (atomically) or removed."""

    path: str
    old: bytes | None
    new: bytes | None  # None: delete
    mode: int = 0o644
    owner: tuple[int, int] | None = None  # (uid, gid); None: whoever runs Kestrel (root)
    secret: bool = False

    @property
    def verb(self) -> str:
        return "Removed" if self.new is None else ("Created" if self.old is None else "Wrote")

    def lines(self, root: Sysroot, diff: bool) -> list[str]:
        verb = {"Created": "create", "Wrote": "write", "Removed": "remove"}[self.verb]
        out = [f"Would {verb} {root.sys(self.path)}" + (" (secret: no diff shown)" if diff and self.secret else "")]
        return out + (unified_diff(root.sys(self.path), self.old, self.new) if diff and not self.secret else [])

    def apply(self, root: Sysroot) -> str:
        target = root.path(self.path)
        if self.new is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        else:
            atomic_write(target, self.new, self.mode)
            _own(target, self.owner)
        return f"{self.verb} {root.sys(self.path)}"


@dataclass(frozen=True)
class MakeDir:
    """A folder (and its parents); MODE and OWNER apply to the folder itself."""

    path: str
    mode: int | None = None
    owner: tuple[int, int] | None = None

    def lines(self, root: Sysroot, diff: bool) -> list[str]:
        return [f"Would create {root.sys(self.path)}/"]

    def apply(self, root: Sysroot) -> str:
        target = root.path(self.path)
        target.mkdir(parents=True, exist_ok=True)
        if self.mode is not None:
            target.chmod(self.mode)
        _own(target, self.owner)
        return f"Created {root.sys(self.path)}/"


@dataclass(frozen=True)
class Link:
    """A symbolic link PATH -> TARGET, switched in one rename (a reader sees the old or the new target)."""

    path: str
    target: str

    def lines(self, root: Sysroot, diff: bool) -> list[str]:
        return [f"Would link {root.sys(self.path)} -> {self.target}"]

    def apply(self, root: Sysroot) -> str:
        link = root.path(self.path)
        tmp = link.with_name(f".{link.name}.link-tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.target, tmp)
        os.replace(tmp, link)
        return f"Linked {root.sys(self.path)} -> {self.target}"


@dataclass(frozen=True)
class RemoveTree:
    """A folder with everything in it, or a link. In the background: renamed away at once, deleted later
    (an image version has tens of thousands of files)."""

    path: str
    background: bool = False

    def lines(self, root: Sysroot, diff: bool) -> list[str]:
        return [f"Would remove {root.sys(self.path)}"]

    def apply(self, root: Sysroot) -> str:
        target = root.path(self.path)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir() and self.background:
            trash = target.with_name(f".trash-{target.name}")
            os.replace(target, trash)
            runner.run(["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(trash)])
        elif target.is_dir():
            shutil.rmtree(target)
        return f"Removed {root.sys(self.path)}"


@dataclass(frozen=True)
class RunCommand:
    """A command whose effect is files (ssh-keygen making a key pair): shown by --dry-run, run by apply."""

    argv: tuple[str, ...]
    says: str  # the line logged when done, e.g. "Created /home/alice/.ssh/id_ed25519"
    input: bytes | None = None  # its standard input (`nft -f -`: the transaction); --diff shows it

    def lines(self, root: Sysroot, diff: bool) -> list[str]:
        out = [f"Would run {shlex.join(self.argv)}" + (" with this input:" if diff and self.input else "")]
        if diff and self.input:
            out += ["  " + line for line in self.input.decode("utf-8", "replace").splitlines()]
        return out

    def apply(self, root: Sysroot) -> str:
        runner.run(list(self.argv), input=self.input)
        return self.says


Step = FileChange | MakeDir | Link | RemoveTree | RunCommand


@dataclass
class Plan:
    """Steps in the order they run, then the service actions they call for (one per service)."""

    steps: list[Step] = field(default_factory=list)
    actions: list[ServiceAction] = field(default_factory=list)

    @property
    def changes(self) -> list[FileChange]:
        return [s for s in self.steps if isinstance(s, FileChange)]

    @property
    def directories(self) -> list[str]:
        return [s.path for s in self.steps if isinstance(s, MakeDir)]

    @property
    def is_empty(self) -> bool:
        return not (self.steps or self.actions)

    def add(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def add_action(self, action: ServiceAction) -> None:
        """One action per service; a restart covers a reload."""
        for i, have in enumerate(self.actions):
            if have.service == action.service:
                if have.action is Action.RELOAD and action.action is Action.RESTART:
                    self.actions[i] = action
                return
        self.actions.append(action)

    def merge(self, other: Plan) -> None:
        self.steps.extend(other.steps)
        for a in other.actions:
            self.add_action(a)


def plan_removal(root: Sysroot, *paths: str) -> Plan:
    """The removal of each file of PATHS that is there."""
    return Plan([FileChange(p, old, None) for p in paths if (old := root.read(p)) is not None])


def _own(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner)


def plan_files(
    root: Sysroot, desired: Iterable[Desired], owned: Iterable[tuple[str, str]] = (), directories: Iterable[str] = ()
) -> Plan:
    """Compare DESIRED with disk. Files under an OWNED (folder, glob) that are not desired are removed."""
    plan = Plan([MakeDir(d) for d in directories if not root.path(d).is_dir()])
    desired = list(desired)
    wanted = {d.path for d in desired}
    for d in desired:
        old = root.read(d.path)
        have = _mode(root.path(d.path)) if old is not None else None
        mode = d.mode if d.mode is not None else (have or 0o644)
        if old != d.content or have != mode or (d.owner is not None and file_owner(root.path(d.path)) != d.owner):
            plan.add(FileChange(d.path, old, d.content, mode, d.owner, d.secret))
            if d.on_change:
                service, action = d.on_change
                plan.add_action(ServiceAction(service, action, f"{d.path} changed"))
    for stale in stale_temp_files(root, wanted):
        plan.add(FileChange(stale, root.read(stale), None))
    for folder, pattern in owned:
        real = root.path(folder)
        if not real.is_dir():
            continue
        for entry in sorted(real.iterdir()):
            sys_path = f"{folder.rstrip('/')}/{entry.name}"
            if entry.is_file() and fnmatch.fnmatch(entry.name, pattern) and sys_path not in wanted:
                # a file others may not read is not shown by a --diff either (the nodes' host key bundles)
                secret = not _mode(entry) & 0o004
                plan.add(FileChange(sys_path, entry.read_bytes(), None, secret=secret))
    return plan


def stale_temp_files(root: Sysroot, paths: Iterable[str]) -> list[str]:
    """Temp files that a writer of PATHS left when it was killed mid-write (.NAME.RANDOM.kestrel-tmp beside NAME).

    Only a writer holding the lock plans their removal, and every writer of these files holds it: no temp file
    found here belongs to a write under way."""
    by_folder: dict[str, set[str]] = {}
    for path in paths:
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder or "/", set()).add(name)
    found = []
    for folder, files in sorted(by_folder.items()):
        try:
            entries = os.listdir(root.path(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in sorted(entries):
            if entry.startswith(".") and entry.endswith(TEMP_SUFFIX):
                name = entry[1 : -len(TEMP_SUFFIX)].rpartition(".")[0]
                if name in files:
                    found.append(f"{folder.rstrip('/')}/{entry}")
    return found


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def apply_changes(root: Sysroot, plan: Plan) -> None:
    """Carry out the plan's steps in order, a line each (not its service actions: frontend/services does those)."""
    for step in plan.steps:
        logger.info(step.apply(root))


def describe_plan(root: Sysroot, plan: Plan, diff: bool) -> str:
    """What --dry-run prints: one line per step and action, with unified diffs of files when asked."""
    return "\n".join(plan_lines(root, plan, diff) or ["Nothing to do"]) + "\n"


def plan_lines(root: Sysroot, plan: Plan, diff: bool) -> list[str]:
    """describe_plan's lines, none for an empty plan (a dry run that says more than one plan)."""
    out = [line for step in plan.steps for line in step.lines(root, diff)]
    return out + [_action_line(root, a) for a in plan.actions]


def touches_service(root: Sysroot, a: ServiceAction) -> bool:
    """Whether carrying out A acts on its service: always under systemd; on a supervised tree only when Kestrel
    runs that service for this tree (the processes of the host are never touched)."""
    return root.uses_systemd or supervisor.find(root, a.service) is not None


def _action_line(root: Sysroot, a: ServiceAction) -> str:
    if touches_service(root, a):
        return f"Would {a.action} {a.service} ({a.reason})"
    return f"Would skip {a.action} of {a.service}: not running under {root.root}"


def unified_diff(name: str, old: bytes | None, new: bytes | None) -> list[str]:
    try:
        a = (old or b"").decode("utf-8").splitlines(keepends=True)
        b = (new or b"").decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return [f"Binary file {name} differs"]
    lines = difflib.unified_diff(
        a, b, "/dev/null" if old is None else f"a{name}", "/dev/null" if new is None else f"b{name}"
    )
    return [line.rstrip("\n") for line in lines]
