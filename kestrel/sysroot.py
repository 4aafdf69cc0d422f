"""The only place that touches files: paths under --root, atomic writes, the lock, marked blocks, plans."""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import fnmatch
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath

from kestrel.errors import InputError, KestrelError

LOCK_PATH = "/var/lib/kestrel/lock"
BLOCK_BEGIN = "# BEGIN kestrel"
BLOCK_END = "# END kestrel"


class ServiceMode(StrEnum):
    """How the services of a tree run, and so what its rendered files and service actions are for."""

    SYSTEMD = "systemd"  # a real frontend: the distribution's units (systemctl, drop-ins), DNS forwarded out
    SUPERVISED = "supervised"  # processes Kestrel starts under the tree (the lab, tests); DNS stays inside


class Sysroot:
    """A system tree: / on a real frontend, any folder for tests, the lab and --dry-run renders.

    SERVICES is systemd for / and supervised for any other tree unless given: ServiceMode.SYSTEMD renders a
    tree as a real frontend (its service actions are then systemctl commands on this machine, which a test
    stubs).
    """

    def __init__(self, root: Path | str = "/", services: ServiceMode | None = None) -> None:
        self.root = Path(root).resolve()
        self.services = services or _usual_services(self.root)

    def __repr__(self) -> str:
        mode = "" if self.services is _usual_services(self.root) else f", ServiceMode.{self.services.name}"
        return f"Sysroot({str(self.root)!r}{mode})"

    @property
    def is_host(self) -> bool:
        """The tree is this machine's own / (useradd, apt-get act on the machine, not on a tree)."""
        return self.root == Path("/")

    @property
    def uses_systemd(self) -> bool:
        """The tree's services are systemd units (a real frontend), not processes Kestrel supervises."""
        return self.services is ServiceMode.SYSTEMD

    def path(self, system_path: str | PurePosixPath) -> Path:
        """The real location of an absolute system path such as /etc/hosts."""
        p = PurePosixPath(system_path)
        if not p.is_absolute() or ".." in p.parts:
            raise KestrelError(f"internal: {system_path!r} is not an absolute system path")
        return self.root.joinpath(*p.parts[1:])

    def sys(self, system_path: str | PurePosixPath) -> str:
        """The system path as it is written inside generated files: under ROOT, so a --root tree runs as is."""
        return str(self.path(system_path))

    def read(self, system_path: str) -> bytes | None:
        try:
            return self.path(system_path).read_bytes()
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise writers (CLI, lease hook, reconfigure) on one lock file; re-entrant in a process."""
        key = str(self.root)
        if _held.get(key):
            _held[key] += 1
            try:
                yield
            finally:
                _held[key] -= 1
            return
        path = self.path(LOCK_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _held[key] = 1
            try:
                yield
            finally:
                _held[key] = 0
        finally:
            os.close(fd)


_held: dict[str, int] = {}


def _usual_services(root: Path) -> ServiceMode:
    return ServiceMode.SYSTEMD if root == Path("/") else ServiceMode.SUPERVISED


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write DATA to PATH so that a reader sees the old or the new file, never a mix.

    Temp file in the same folder, fsync, rename. A bind-mounted target (/etc/hosts in a container)
    refuses the rename with EBUSY; then the file is rewritten in place, the best that can be done there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".kestrel-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            _write_in_place(path, data)
            os.unlink(tmp)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the marked block that Kestrel owns inside a file it shares (/etc/hosts) -------------------------------

def replace_block(text: str, body: str, where: str = "file") -> str:
    """TEXT with the kestrel block set to BODY; every byte outside the block is kept as it was.

    A missing block is appended at the end. An empty BODY removes the block.
    """
    start, end = _find_block(text, where)
    block = f"{BLOCK_BEGIN}\n{body}{'' if not body or body.endswith(chr(10)) else chr(10)}{BLOCK_END}\n"
    if start is None:
        if not body:
            return text
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + block
    assert end is not None
    return text[:start] + (block if body else "") + text[end:]


def read_block(text: str, where: str = "file") -> str | None:
    start, end = _find_block(text, where)
    if start is None or end is None:
        return None
    inner = text[start:end].split("\n", 1)[1]
    return inner[: inner.rfind(BLOCK_END)]


def _find_block(text: str, where: str) -> tuple[int | None, int | None]:
    """Offsets of the block: from the start of its BEGIN line to just after its END line."""
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)  # only \n ends a line in /etc/hosts
    offset, start, end = 0, None, None
    for line in lines:
        bare = line.rstrip("\r\n")
        if bare == BLOCK_BEGIN:
            if start is not None:
                raise InputError(f"{where}: two '{BLOCK_BEGIN}' lines; remove one by hand")
            start = offset
        elif bare == BLOCK_END and start is not None and end is None:
            end = offset + len(line)
        offset += len(line)
    if start is not None and end is None:
        raise InputError(f"{where}: '{BLOCK_BEGIN}' without '{BLOCK_END}'; fix the block by hand")
    return start, end


# -- plans: what should change, computed purely, then applied by apply_plan --------------------------------

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

    def extend(self, other: Plan) -> None:
        self.changes.extend(other.changes)
        self.directories.extend(d for d in other.directories if d not in self.directories)
        for a in other.actions:
            self.add_action(a)


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


def apply_changes(root: Sysroot, plan: Plan, say: Callable[[str], None] = print) -> None:
    """Write the plan's files and folders (not its service actions: services/ does those)."""
    for d in plan.directories:
        root.path(d).mkdir(parents=True, exist_ok=True)
        say(f"Created {root.sys(d)}/")
    for c in plan.changes:
        target = root.path(c.path)
        if c.new is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        else:
            atomic_write(target, c.new, c.mode)
        say(f"{c.verb} {root.sys(c.path)}")


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
