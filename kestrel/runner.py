"""The one command runner: here, in a network namespace, in an image (chroot) or on a node (SSH), one Result.

Where a command runs is a Via: Netns lives here; images.chroot.Chroot and nodes.ssh.On implement the same
small protocol, so this module never imports them. A failure is told in one sentence (Result.sentence):
the command, where it ran, how it ended, the last line it printed on stderr. Daemons and VMs are started
with spawn(), interactive sessions that replace this program with become().
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple, NoReturn, Protocol

from kestrel.errors import CommandError

logger = logging.getLogger(__name__)

NOT_FOUND = "command not found"
# Runs ARGV with a private tmpfs on /run, so daemons that insist on /run (rpcbind, sshd) leave the host's alone.
_PRIVATE_RUN = 'mount -t tmpfs kestrel-run /run && exec "$@"'


@dataclass(frozen=True)
class How:
    """How to run a command, wherever it runs. OUTPUT, if given, is an open file that receives stdout and
    stderr together (long outputs such as apt's go to a log, not to memory); INTERACTIVE hands the command
    the terminal."""

    input: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    timeout: float | None = None
    capture: bool = True
    output: IO[bytes] | None = None
    interactive: bool = False


class Ended(NamedTuple):
    """What running a command gave: its exit status, or None and ERROR when it never ran or never finished."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None


class Via(Protocol):
    """Somewhere else a command runs: a network namespace, an image, a node."""

    @property
    def where(self) -> str:
        """Follows the command in messages: 'in network namespace kt-fe', 'on node01'."""
        ...

    def execute(self, argv: list[str], how: How) -> Ended: ...


@dataclass
class Result:
    """A finished command, wherever it ran. ERROR says why it has no exit code: not found, timed out, no
    connection."""

    argv: list[str]
    where: str = ""
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0

    def why(self) -> str:
        """How it ended, in a few words: 'exit code 2', 'killed by SIGKILL', 'command not found'."""
        if self.error is not None or self.returncode is None:
            return self.error or "did not run"
        if self.returncode < 0:
            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exit code {self.returncode}"

    def sentence(self) -> str:
        """The one failure sentence: "'ip link add ...' in network namespace kt-fe: exit code 2: RTNETLINK ..."."""
        place = f" {self.where}" if self.where else ""
        return f"{describe(self.argv)}{place}: {self.why()}{last_line(self.stderr)}"

    def check(self) -> Result:
        """Itself if it succeeded, else CommandError with its sentence."""
        if not self.ok:
            raise CommandError(self.sentence())
        return self


def run(
    argv: Sequence[str],
    *,
    via: Via | None = None,
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    output: IO[bytes] | None = None,
    interactive: bool = False,
) -> Result:
    """Run ARGV here, or through VIA; with CHECK a failure raises CommandError with the result's sentence."""
    if isinstance(input, bytes):
        input = input.decode()
    how = How(input, env, cwd, timeout, capture, output, interactive)
    started = time.monotonic()
    ended = via.execute(list(argv), how) if via is not None else local(list(argv), how)
    result = Result(list(argv), via.where if via is not None else "", *ended, seconds=time.monotonic() - started)
    place = f" {result.where}" if result.where else ""
    logger.debug("Ran %s%s in %.2f s (%s)", " ".join(argv), place, result.seconds, result.why())
    return result.check() if check else result


def local(argv: list[str], how: How) -> Ended:
    """ARGV as a child of this process and waited for (Vias that wrap a command end up here)."""
    pipe = subprocess.PIPE if how.capture and not how.interactive else None
    try:
        proc = subprocess.run(
            argv,
            input=how.input,
            env=None if how.env is None else dict(how.env),
            cwd=how.cwd,
            timeout=how.timeout,
            text=True,
            stdin=None if how.interactive or how.input is not None else subprocess.DEVNULL,
            stdout=how.output if how.output is not None else pipe,
            stderr=subprocess.STDOUT if how.output is not None else pipe,
            check=False,
        )
    except OSError as e:
        return Ended(None, error=_cannot_start(e, how.cwd))
    except subprocess.TimeoutExpired as e:
        return Ended(None, _text(e.stdout), _text(e.stderr), f"timed out after {how.timeout:g} s")
    return Ended(proc.returncode, proc.stdout or "", proc.stderr or "")


@dataclass(frozen=True)
class Netns:
    """Runs commands inside network namespace NAME (ip netns exec)."""

    name: str

    @property
    def where(self) -> str:
        return f"in network namespace {self.name}"

    def execute(self, argv: list[str], how: How) -> Ended:
        if not found(argv[0], how.env):  # else `ip` would be the one reporting it, in its own words
            return Ended(None, error=NOT_FOUND)
        return local(netns_argv(self.name, argv), how)


def in_netns(name: str | None) -> Netns | None:
    """The Via for network namespace NAME; None (here) without one."""
    return Netns(name) if name else None


def netns_argv(name: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


@dataclass
class Process:
    """A long-running process started by spawn(); poll() collects its exit status while this program runs."""

    argv: list[str]
    pid: int
    _popen: subprocess.Popen[bytes] = field(repr=False)

    def poll(self) -> int | None:
        return self._popen.poll()


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    netns: str | None = None,
    private_run: bool = False,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Start ARGV in a new session (it outlives this program), stdin from /dev/null, stdout and stderr
    appended to LOG; inside network namespace NETNS, with a private tmpfs on /run if PRIVATE_RUN."""
    full = list(argv)
    if private_run:
        full = ["unshare", "-m", "--propagation", "private", "sh", "-c", _PRIVATE_RUN, "sh", *full]
    if netns:
        full = netns_argv(netns, full)
    where = Netns(netns).where if netns else ""
    if not found(argv[0], env):
        raise CommandError(Result(list(argv), where, error=NOT_FOUND).sentence())
    with open(log, "ab") as out:
        try:
            popen = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if env is None else dict(env),
            )
        except OSError as e:
            raise CommandError(Result(list(argv), where, error=_cannot_start(e)).sentence()) from None
    logger.debug("Started %s%s as pid %d, output to %s", " ".join(argv), f" {where}" if where else "", popen.pid, log)
    return Process(list(argv), popen.pid, popen)


def become(argv: Sequence[str]) -> NoReturn:
    """Replace this program with ARGV (an interactive session that owns the terminal, such as ssh)."""
    logger.debug("Running %s in place of this program", " ".join(argv))
    try:
        os.execvp(argv[0], list(argv))  # noqa: S606
    except OSError as e:
        raise CommandError(Result(list(argv), error=_cannot_start(e)).sentence()) from None


def kestrel_argv(program: str, *args: str) -> list[str]:
    """Kestrel's own kestrel-PROGRAM, from this install only: isolated (-I), so neither the working directory nor
    PYTHONPATH can put another Kestrel first."""
    return [sys.executable, "-I", "-m", f"kestrel.cli.{program}", *args]


def found(program: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether PROGRAM exists as exec would look for it (a path, or a name on ENV's PATH)."""
    if "/" in program:
        return os.path.exists(program)
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    return shutil.which(program, path=path) is not None


def describe(argv: Sequence[str]) -> str:
    """The command as messages show it: its first four words."""
    words = " ".join(argv).split()
    return "'" + " ".join(words[:4]) + (" ..." if len(words) > 4 else "") + "'"


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


def _cannot_start(e: OSError, cwd: str | None = None) -> str:
    if isinstance(e, FileNotFoundError) and (cwd is None or e.filename != cwd):
        return NOT_FOUND
    return f"cannot start it: {e.strerror or e}"


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""
