"""The one command runner: every subprocess goes through here as an argument list, never a shell string."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import IO

from kestrel.errors import CommandError

logger = logging.getLogger(__name__)


def run(
    argv: Sequence[str],
    *,
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    netns: str | None = None,
    chroot: str | None = None,
    check: bool = True,
    capture: bool = True,
    output: IO[bytes] | None = None,
    interactive: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ARGV (inside network namespace NETNS or chroot CHROOT if given) and return its result.

    A failure raises CommandError with one sentence: the command, its exit code or signal, and the last
    line it printed on stderr; a missing program says "not found". OUTPUT, if given, is an open file that
    receives stdout and stderr together (long outputs such as apt's go to a log, not to memory).
    INTERACTIVE hands the terminal (stdin, stdout, stderr) to the command.
    """
    full = list(argv)
    if chroot:
        full = ["chroot", chroot, *full]
    if netns:
        full = ["ip", "netns", "exec", netns, *full]
    if isinstance(input, bytes):
        input = input.decode()
    pipe = subprocess.PIPE if capture and not interactive else None
    started = time.monotonic()
    try:
        proc = subprocess.run(
            full,
            input=input,
            env=None if env is None else dict(env),
            cwd=cwd,
            timeout=timeout,
            text=True,
            stdin=None if interactive or input is not None else subprocess.DEVNULL,
            stdout=output if output is not None else pipe,
            stderr=subprocess.STDOUT if output is not None else pipe,
            check=False,
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{describe(argv)}: timed out after {timeout:g} s") from None
    logger.debug("Ran %s in %.2f s (%s)", " ".join(full), time.monotonic() - started, how_it_ended(proc.returncode))
    if check and proc.returncode != 0:
        raise CommandError(f"{describe(argv)}: {how_it_ended(proc.returncode)}{last_line(proc.stderr)}")
    return proc


def describe(argv: Sequence[str]) -> str:
    shown = " ".join(argv[:4]) + (" ..." if len(argv) > 4 else "")
    return f"'{shown}'"


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def last_line(text: str | None) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return f": {lines[-1]}" if lines else ""


def which(program: str, extra: Sequence[str] = ("/usr/sbin", "/sbin")) -> str | None:
    """PATH lookup that also sees sbin folders (dnsmasq, sshd) when run by a non-root PATH."""
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), *extra]:
        candidate = os.path.join(folder, program)
        if folder and os.access(candidate, os.X_OK):
            return candidate
    return None
