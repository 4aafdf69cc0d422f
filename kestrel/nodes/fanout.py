"""Work on many nodes at once over SSH: the bounded fan-out, a command everywhere, connectivity checks."""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kestrel import runner
from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.nodes import keeper, registry, ssh
from kestrel.nodes import state as nodestate
from kestrel.nodes.state import Facts
from kestrel.sysroot import Sysroot

T = TypeVar("T")
logger = logging.getLogger(__name__)


def select_targets(root: Sysroot, wanted: list[str], group: str | None) -> list[ssh.Target]:
    """The registered nodes WANTED names (registry.select_nodes), or those of GROUP, or all."""
    return [ssh.Target(n.name, str(n.ip)) for n in registry.select_nodes(registry.load_registry(root), wanted, group)]


def exec_on(
    root: Sysroot,
    config: Config,
    targets: list[ssh.Target],
    command: str,
    *,
    user: str = "root",
    key: Path | None = None,
    parallel: int = 10,
    connect_timeout: float | None = None,
    command_timeout: float = 600.0,
    input: str = "",
) -> list[runner.Result]:
    """COMMAND on every target in parallel (INPUT on its standard input): as root with the frontend's key
    (nodes.ssh_key), or as USER with KEY; the results in the order of TARGETS. Through the tree's SSH keeper
    (connections kept between commands), or, where it cannot run, over connections of this process."""
    if not command.strip():
        raise InputError("no command given (kestrel-nodes exec [NODES...] -- COMMAND)")
    timeout = float(connect_timeout or config.nodes.ssh_timeout)
    if user == "root":
        key = root.path(config.nodes.ssh_key)
    assert key is not None, "a cluster user's key"
    known = ssh.known_hosts_files(root)
    request = keeper.Request(
        user,
        str(key),
        [str(p) for p in known],
        timeout,
        config.network.netns,
        [(t.name, t.address, t.port) for t in targets],
        command,
        parallel,
        command_timeout,
        input,
    )
    kept = keeper.run_kept(root, request)
    if kept is not None:
        return kept
    with ssh.Pool(user, key, known, timeout, config.network.netns) as pool:
        return run_many(pool, targets, command, parallel=parallel, timeout=command_timeout, input=input or None)


@dataclass
class Check:
    target: ssh.Target
    ping: str = ""  # 'icmp 0.3 ms', 'no reply'
    ssh: str = ""  # 'ok' or why not
    home: str = ""  # 'nfs 10.10.0.1:/home', 'ext4 (not NFS)', 'not mounted', '-'
    seconds: float = 0.0
    ping_ok: bool = False
    ssh_ok: bool = False
    home_ok: bool = False

    @property
    def ok(self) -> bool:
        return self.ping_ok and self.ssh_ok and self.home_ok

    def problems(self) -> str:
        bad = [w for w, good in (("ping", self.ping_ok), ("ssh", self.ssh_ok), ("home", self.home_ok)) if not good]
        return ", ".join(bad)


def ping(address: str, timeout: float = 1.0, netns_name: str | None = None) -> tuple[bool, str]:
    """One ICMP echo with the `ping` program (iputils); falls back to a TCP connect to port 22 without it."""
    start = time.monotonic()
    if runner.which("ping"):
        proc = runner.run(
            ["ping", "-n", "-q", "-c", "1", "-W", f"{max(1, round(timeout))}", address],
            check=False,
            timeout=timeout + 5,
            via=runner.in_netns(netns_name),
        )
        ms = (time.monotonic() - start) * 1000
        return (True, f"icmp {ms:.1f} ms") if proc.returncode == 0 else (False, "icmp: no reply")
    try:
        with ssh.open_socket(address, 22, timeout, netns_name) or socket.create_connection((address, 22), timeout):
            pass
    except OSError:
        return False, "tcp/22: no answer"
    return True, f"tcp/22 {(time.monotonic() - start) * 1000:.1f} ms"


def home_command(home: str) -> str:
    return f"findmnt -n -o FSTYPE,SOURCE --mountpoint {shlex.quote(home)} || echo none"


def check_command(home: str) -> str:
    """One SSH visit of `check`: the node's facts (CPUs, memory, booted root) and its home mount."""
    return f"{nodestate.FACTS_COMMAND}; echo home=$({home_command(home)})"


def read_check(target: ssh.Target, pinged: tuple[bool, str], visit: runner.Result) -> tuple[Check, Facts | None]:
    """The Check of one node from its ping and its SSH visit (check_command)."""
    c = Check(target, seconds=visit.seconds)
    c.ping_ok, c.ping = pinged
    c.ssh_ok = visit.error is None
    c.ssh = "ok" if c.ssh_ok else visit.why()
    found = next((line[5:] for line in visit.stdout.splitlines() if line.startswith("home=")), "")
    fields = found.split()
    if not c.ssh_ok:
        c.home = "-"
    elif not fields or fields[0] == "none":
        c.home = "not mounted"
    else:
        c.home_ok = True
        c.home = " ".join(fields[:2]) if fields[0].startswith("nfs") else f"{fields[0]} (not NFS)"
    facts = None
    if c.ssh_ok:
        with contextlib.suppress(ValueError):
            facts = nodestate.parse_facts(visit.stdout)
    return c, facts


def check_all(
    root: Sysroot, config: Config, targets: list[ssh.Target], parallel: int = 10
) -> list[tuple[Check, Facts | None]]:
    """Ping every target and visit it over SSH (through the SSH keeper, as exec does), both in parallel."""
    if not targets:
        return []
    timeout = float(config.nodes.ssh_timeout)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pinger:
        pings = [pinger.submit(ping, t.address, 1.0, config.network.netns) for t in targets]
        visits = exec_on(
            root,
            config,
            targets,
            check_command(config.nfs.home),
            parallel=parallel,
            connect_timeout=timeout,
            command_timeout=timeout,
        )
        return [read_check(t, p.result(), v) for t, p, v in zip(targets, pings, visits, strict=True)]


def reach(
    pool: ssh.Pool, targets: Sequence[ssh.Target], patience: float, parallel: int = 16, pause: float = 2.0
) -> dict[ssh.Target, str]:
    """Connect POOL to every target, asking those that do not answer again for up to PATIENCE seconds (never one
    that refused the key or showed an unknown host key); why each target left unreached was not reached."""
    deadline = time.monotonic() + patience
    pending = list(targets)
    unreached: dict[ssh.Target, str] = {}
    while pending:
        answers = fan_out(pending, pool.reach, parallel)
        waiting = time.monotonic() + pause < deadline
        again = []
        for t, answer in zip(pending, answers, strict=True):
            if answer is None:
                unreached.pop(t, None)
                continue
            why, may_help = answer
            if may_help and waiting:
                if t not in unreached:
                    logger.info(f"{t.name}: {why}; asking again for up to {patience:g} s")
                again.append(t)
            unreached[t] = why
        if again:
            time.sleep(pause)
        pending = again
    return unreached


def fan_out(targets: Sequence[ssh.Target], work: Callable[[ssh.Target], T], parallel: int = 10) -> list[T]:
    """WORK for every target in at most PARALLEL threads; results in the order of TARGETS."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        return list(pool.map(work, targets))


def run_many(
    pool: ssh.Pool,
    targets: Sequence[ssh.Target],
    command: str,
    *,
    parallel: int = 10,
    timeout: float = 60.0,
    input: bytes | str | None = None,
) -> list[runner.Result]:
    """COMMAND on every target, PARALLEL at a time, through POOL; the results in the order of TARGETS."""
    return fan_out(
        targets, lambda t: runner.run([command], via=pool.on(t), timeout=timeout, input=input, check=False), parallel
    )
