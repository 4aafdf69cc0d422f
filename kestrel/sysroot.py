"""System trees: paths under --root, atomic writes, the lock, and the marked block Kestrel owns in a shared file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path, PurePosixPath

from kestrel.errors import InputError, KestrelError

logger = logging.getLogger(__name__)

LOCK_PATH = "/var/lib/kestrel/lock"
LOG_DIR = "/var/log/kestrel"  # daemon logs, phase logs, VM consoles
RUN_DIR = "/run/kestrel"  # records of the processes Kestrel supervises
# A tree rendered in another mode than its usual one says so here, so every later program on it agrees.
SERVICE_MODE_PATH = "/var/lib/kestrel/service-mode"
BLOCK_BEGIN = "# BEGIN kestrel"
BLOCK_END = "# END kestrel"


class ServiceMode(StrEnum):
    """How the services of a tree run, and so what its rendered files and service actions are for."""

    SYSTEMD = "systemd"  # a real frontend: the distribution's units (systemctl, drop-ins), DNS forwarded out
    SUPERVISED = "supervised"  # processes Kestrel starts under the tree (the lab, tests); DNS stays inside


class Sysroot:
    """A system tree: / on a real frontend, any folder for tests, the lab and --dry-run renders.

    SERVICES is systemd for / and supervised for any other tree unless given or recorded in the tree
    (SERVICE_MODE_PATH, written by the frontend's plan): ServiceMode.SYSTEMD renders a tree as a real
    frontend (its service actions are then systemctl commands on this machine, which a test stubs).
    """

    def __init__(self, root: Path | str = "/", services: ServiceMode | None = None) -> None:
        self.root = Path(root).resolve()
        self.services = services or _recorded_services(self.root) or usual_services(self.root)

    def __repr__(self) -> str:
        mode = "" if self.services is usual_services(self.root) else f", ServiceMode.{self.services.name}"
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


def usual_services(root: Path) -> ServiceMode:
    return ServiceMode.SYSTEMD if root == Path("/") else ServiceMode.SUPERVISED


def _recorded_services(root: Path) -> ServiceMode | None:
    try:
        text = root.joinpath(SERVICE_MODE_PATH.lstrip("/")).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return ServiceMode(text)
    except ValueError:
        raise InputError(f"{root / SERVICE_MODE_PATH.lstrip('/')}: {text!r} is not systemd or supervised") from None


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write DATA to PATH so that a reader sees the old or the new file, never a mix.

    Temp file in the same folder, fsync, rename. A bind-mounted target (/etc/hosts in a container)
    refuses the rename with EBUSY; then the file is rewritten in place, the best that can be done there.
    """
    try:
        _atomic_write(path, data, mode)
    except OSError as e:  # a full disk, a read-only file system, no permission: name the file
        raise KestrelError(f"{path}: cannot write: {e.strerror or e}") from e


TEMP_SUFFIX = ".kestrel-tmp"


def temp_prefix(name: str) -> str:
    """Temp files of NAME are .NAME.RANDOM.kestrel-tmp beside it (a writer killed mid-write leaves one)."""
    return f".{name}."


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # A symlinked managed file (an admin's /etc/hosts -> /etc/hosts.d/local) is written through to its target,
    # which keeps its owner: the link stays a link.
    path = Path(os.path.realpath(path)) if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = file_owner(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), *owner)
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


def file_owner(path: Path) -> tuple[int, int] | None:
    """(uid, gid) of PATH, None if it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_uid, st.st_gid


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


def decode(data: bytes | None) -> str | None:
    """A file as text: UTF-8, and any other byte kept as it is (surrogateescape), so encode gives it back."""
    return None if data is None else data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def content_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of a Kestrel line file, without blank lines and '#' comment lines."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


# -- the marked block that Kestrel owns inside a file it shares (/etc/hosts) -------------------------------


def replace_block(text: str, body: str, where: str = "file") -> str:
    """TEXT with the kestrel block set to BODY; every byte outside the block is kept as it was.

    A missing block is appended at the end (at the start of a text whose last line has no newline). An empty
    BODY removes the block.
    """
    start, end = _find_block(text, where)
    block = f"{BLOCK_BEGIN}\n{body}{'' if not body or body.endswith(chr(10)) else chr(10)}{BLOCK_END}\n"
    if start is None:
        if not body:
            return text
        # After the admin's text if it ends a line; else before it, so that not even its last newline changes.
        return text + block if not text or text.endswith("\n") else block + text
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
