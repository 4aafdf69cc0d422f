"""Reloading HAProxy one reload at a time: its master handles SIGUSR2 by re-executing itself, and a second
SIGUSR2 that arrives meanwhile is lost (measured: four signals 50 ms apart gave one reload). So each reload
waits until the master has forked the worker of the new config before the next registry change signals it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def workers(master: int) -> set[int]:
    """The children of process MASTER (HAProxy's workers)."""
    found: set[int] = set()
    for task in Path(f"/proc/{master}/task").glob("*"):
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def reload_haproxy(master: int, timeout: float = 5.0) -> bool:
    """SIGUSR2 to HAProxy's MASTER; True once a worker on the new config runs (old ones finish their connections
    and exit), False if none came within TIMEOUT (a config it refused: the old workers keep serving)."""
    before = workers(master)
    os.kill(master, signal.SIGUSR2)
    return wait_new_worker(master, before, timeout)


def wait_new_worker(master: int, before: set[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if workers(master) - before:
            return True
        time.sleep(0.02)
    return False
