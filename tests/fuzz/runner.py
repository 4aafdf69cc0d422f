"""Running fuzz cases: in process through each program's own error boundary (cli.common.run, the same code path
as the console script), or as real processes; a tree snapshot around each run."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from kestrel.inputfile import LEASES_LIMIT
from tests.fuzz.cases import Case
from tests.treestate import kestrel

# A refusal may take LIMIT seconds of CPU. The machine is shared (its load can make a second of work take ten),
# so waiting is bounded apart, by WALL: a FIFO read that blocks forever is a hang either way.
LIMIT = 5.0
WALL = 60.0
_LOCK = "var/lib/kestrel/lock"
_SMALL = 1 << 16


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no error boundary turns it into a line."""


@dataclass
class Outcome:
    code: int | None  # None: it hung
    stderr: str
    seconds: float  # CPU
    changed: list[str]


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ROOT (no FIFO or device is opened): kind, mode, owner, size, inode, and the SHA-256 of
    small files and link targets; the writers' lock (an empty file taken before some checks) is left out."""
    found: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel == _LOCK:
                continue
            st = os.lstat(path)
            digest: str | None = None
            if stat.S_ISLNK(st.st_mode):
                digest = os.readlink(path)
            elif stat.S_ISREG(st.st_mode) and st.st_size <= _SMALL:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_ino, st.st_mtime_ns, digest)
    return found


def _changes(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def prepare(root: Path, case: Case) -> tuple[list[str], dict[str, bytes | None]]:
    """Write the case's files (remembering what was there) and its special file; the args, resolved."""
    saved: dict[str, bytes | None] = {}
    for sys_path, data in case.files.items():
        real = root / sys_path.lstrip("/")
        saved[sys_path] = real.read_bytes() if real.exists() else None
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data)
    args = list(case.args)
    if case.special:
        target = next(a for a in (args + [case.names]) if a.startswith("/fuzz/")) if "--leases" in args else None
        sys_path = target or _leases_in_config(case)
        real = root / sys_path.lstrip("/")
        real.parent.mkdir(parents=True, exist_ok=True)
        _make_special(real, case.special)
        if target:
            args[args.index(target)] = str(real)
        case.names = str(real) if case.special != "missing" else "no leases file"
    return args, saved


def _leases_in_config(case: Case) -> str:
    import json

    return str(json.loads(case.files["/etc/kestrel/kestrel.yaml"])["network"]["leases_file"])


def _make_special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind in ("devzero", "symlink-devzero"):
        path.symlink_to("/dev/zero")
    elif kind == "devnull":
        path.symlink_to("/dev/null")
    elif kind == "big":
        with open(path, "wb") as f:
            f.truncate(LEASES_LIMIT + 1)
    elif kind == "dangling":
        path.symlink_to(path.with_name("nowhere"))


def restore(root: Path, case: Case, saved: dict[str, bytes | None]) -> None:
    for sys_path, data in saved.items():
        real = root / sys_path.lstrip("/")
        if data is None:
            real.unlink(missing_ok=True)
        else:
            real.write_bytes(data)
    shutil.rmtree(root / "fuzz", ignore_errors=True)


def in_process(root: Path, program: str, args: list[str]) -> tuple[int | None, str, float]:
    """PROGRAM's console-script entry point (kestrel.cli.PROGRAM.main, through its error boundary) with sys.argv
    set; stderr captured. A run that takes LIMIT seconds of CPU (an alias bomb) or WALL seconds of waiting
    (a FIFO) is stopped by a timer and reported as a hang (code None). Returns (code, stderr, CPU seconds)."""
    module = importlib.import_module(f"kestrel.cli.{program}")
    err = io.StringIO()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Hang()

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGALRM, signal.SIGPROF)}
    signal.setitimer(signal.ITIMER_PROF, LIMIT)
    signal.setitimer(signal.ITIMER_REAL, WALL)
    argv = sys.argv
    sys.argv = [f"kestrel-{program}", "--root", str(root), *args]
    started = time.process_time()
    code: int | None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            module.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Hang:
        code = None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in old.items():
            signal.signal(sig, handler)
        sys.argv = argv
    return code, err.getvalue(), time.process_time() - started


def as_process(root: Path, program: str, args: list[str]) -> tuple[int | None, str, float]:
    """The real program in a process of its own; its CPU seconds (interpreter start-up included)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = kestrel(program, root, *args, timeout=WALL)
    except subprocess.TimeoutExpired:
        return None, "", WALL
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc.returncode, proc.stderr, now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime


def execute(root: Path, case: Case, pristine: Path, *, in_own_process: bool = False) -> Outcome:
    """Run CASE on ROOT; a case that changed the tree (a failure) leaves ROOT as PRISTINE again for the next."""
    args, saved = prepare(root, case)
    try:
        before = snapshot(root)
        code, stderr, seconds = (as_process if in_own_process else in_process)(root, case.program, args)
        changed = _changes(before, snapshot(root))
    finally:
        restore(root, case, saved)
    if changed:
        shutil.rmtree(root)
        shutil.copytree(pristine, root, symlinks=True)
    return Outcome(code, stderr, seconds, changed)


def verdict(case: Case, outcome: Outcome) -> str | None:
    """Why OUTCOME is not a clean refusal of CASE (None: exit 2, one line naming the input, nothing changed)."""
    lines = outcome.stderr.splitlines()
    if outcome.code is None:
        return "hang"
    if "Traceback" in outcome.stderr:
        return "traceback"
    if outcome.changed:
        return f"changed {outcome.changed[:3]}"
    if outcome.code != 2:
        return f"exit {outcome.code}: {outcome.stderr.strip()[:300]!r}"
    if len(lines) != 1 or not lines[0].startswith(f"kestrel-{case.program}: "):
        return f"not one line: {outcome.stderr[:300]!r}"
    if case.names not in lines[0]:
        return f"does not name {case.names!r}: {lines[0][:300]!r}"
    return None
