"""Daemons that Kestrel starts and supervises itself (the lab, tests): pid + start time under ROOT/run/kestrel.

A record names exactly one process group that Kestrel started; stop() signals that group and nothing else,
and checks the start time first so a recycled pid is never hit.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kestrel import output, runner
from kestrel.errors import CommandError
from kestrel.sysroot import LOG_DIR, RUN_DIR, Sysroot, atomic_write

_children: dict[int, runner.Process] = {}


@dataclass
class Record:
    name: str
    pid: int
    starttime: int
    argv: list[str]
    netns: str | None = None
    private_run: bool = False
    log: str = ""
    env: dict[str, str] = field(default_factory=dict)


def start(
    root: Sysroot,
    name: str,
    argv: list[str],
    *,
    netns: str | None = None,
    private_run: bool = False,
    env: dict[str, str] | None = None,
) -> Record:
    """Start ARGV in the foreground as a new process group, log to ROOT/var/log/kestrel/NAME.log."""
    if find(root, name):
        raise CommandError(f"{name} is already running under {root.root}")
    log = root.path(f"{LOG_DIR}/{name}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = runner.spawn(
        argv, log=log, netns=netns, private_run=private_run, env={**os.environ, output.LOG_TIMES: "1", **(env or {})}
    )
    _children[proc.pid] = proc
    record = Record(name, proc.pid, _starttime(proc.pid) or 0, list(argv), netns, private_run, str(log), env or {})
    atomic_write(_record_path(root, name), json.dumps(asdict(record), indent=1).encode())
    return record


def find(root: Sysroot, name: str) -> Record | None:
    """The live process started as NAME under ROOT, or None (a stale record is ignored)."""
    path = _record_path(root, name)
    try:
        record = Record(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if _starttime(record.pid) != record.starttime:
        return None
    return record


def send(root: Sysroot, name: str, sig: signal.Signals) -> bool:
    record = find(root, name)
    if record is None:
        return False
    os.kill(record.pid, sig)
    return True


def stop(root: Sysroot, name: str, timeout: float = 10.0) -> bool:
    """Stop NAME's process group (TERM, then KILL after TIMEOUT); False if it was not running."""
    record = find(root, name)
    _record_path(root, name).unlink(missing_ok=True)
    if record is None:
        return False
    _signal_group(record.pid, signal.SIGTERM)
    if not _wait_gone(record.pid, timeout):
        _signal_group(record.pid, signal.SIGKILL)
        _wait_gone(record.pid, 5.0)
    return True


def restart(root: Sysroot, name: str) -> Record | None:
    record = find(root, name)
    if record is None:
        return None
    stop(root, name)
    return start(root, name, record.argv, netns=record.netns, private_run=record.private_run, env=record.env)


def revive(root: Sysroot, name: str, after: float = 0.0) -> Record | None:
    """Start NAME again from its record if it died on its own (its record is still there) within AFTER seconds;
    None if it runs (or was stopped on purpose, which removes the record)."""
    path = _record_path(root, name)
    deadline = time.monotonic() + after
    while True:
        try:
            record = Record(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if find(root, name) is None:
            break
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
    return start(root, name, record.argv, netns=record.netns, private_run=record.private_run, env=record.env)


def wait_for_log(record: Record, text: str, timeout: float) -> bool:
    """True once TEXT appears in the record's log (daemons that say when they are ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if text in Path(record.log).read_text(errors="replace"):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return False


def reap() -> None:
    """Collect the exit status of children this process started, so none lingers as a zombie."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)


def _record_path(root: Sysroot, name: str) -> Path:
    return root.path(f"{RUN_DIR}/{name}.json")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            _children.pop(pid, None)
            return True
        state = _state(pid)
        if state is None or state == "Z":
            return True
        time.sleep(0.05)
    return False


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _starttime(pid: int) -> int | None:
    fields = _stat_fields(pid)
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])
