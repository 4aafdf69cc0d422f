"""Network namespaces, bridges, veths and taps (iproute2), for the lab and the tests; always removable."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kestrel import runner
from kestrel.errors import CommandError, InputError
from kestrel.names import check_ifname


def _ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return runner.run(argv).stdout


def exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def pids(name: str) -> list[int]:
    proc = runner.run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


@dataclass
class Topology:
    """Namespaces and devices created through it, removed by destroy() in reverse order.

    Every name starts with PREFIX, so nothing outside what this object made is ever touched.
    """

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    root_devices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.prefix or len(self.prefix) > 8:
            raise InputError(f"namespace prefix {self.prefix!r} must be 1 to 8 characters")
        check_ifname(self.prefix)

    def name(self, suffix: str) -> str:
        return check_ifname(f"{self.prefix}{suffix}")

    def add_netns(self, suffix: str) -> str:
        ns = self.name(suffix)
        if exists(ns):
            raise CommandError(f"network namespace {ns} exists already: remove it first (ip netns del {ns})")
        runner.run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        _ip("link", "set", "lo", "up", netns=ns)
        return ns

    def add_bridge(self, netns: str | None, suffix: str, address: str | None = None) -> str:
        dev = self.name(suffix)
        _ip("link", "add", dev, "type", "bridge", "stp_state", "0", "forward_delay", "0", netns=netns)
        if netns is None:
            self.root_devices.append(dev)
        if address:
            _ip("addr", "add", address, "dev", dev, *(["nodad"] if ":" in address else []), netns=netns)
        _ip("link", "set", dev, "up", netns=netns)
        return dev

    def add_veth(
        self,
        netns_a: str | None,
        suffix_a: str,
        netns_b: str,
        suffix_b: str,
        master_a: str | None = None,
        address_b: str | None = None,
    ) -> tuple[str, str]:
        """A veth pair created directly in its namespaces (no clash in the root namespace)."""
        a, b = self.name(suffix_a), self.name(suffix_b)
        _ip("link", "add", a, "type", "veth", "peer", "name", b, "netns", netns_b, netns=netns_a)
        if netns_a is None:
            self.root_devices.append(a)
        if master_a:
            _ip("link", "set", a, "master", master_a, netns=netns_a)
        _ip("link", "set", a, "up", netns=netns_a)
        if address_b:
            _ip("addr", "add", address_b, "dev", b, netns=netns_b)
        _ip("link", "set", b, "up", netns=netns_b)
        return a, b

    def add_tap(self, netns: str | None, suffix: str, master: str | None = None, mtu: int | None = None) -> str:
        dev = self.name(suffix)
        _ip("tuntap", "add", "dev", dev, "mode", "tap", netns=netns)
        if netns is None:
            self.root_devices.append(dev)
        if mtu:
            _ip("link", "set", dev, "mtu", str(mtu), netns=netns)
        if master:
            _ip("link", "set", dev, "master", master, netns=netns)
        _ip("link", "set", dev, "up", netns=netns)
        return dev

    def destroy(self) -> list[str]:
        """Kill what runs in our namespaces (by pid), delete them and our root devices; return problems."""
        problems = []
        for ns in reversed(self.namespaces):
            if exists(ns):
                kill_namespace_processes(ns)
                if runner.run(["ip", "netns", "del", ns], check=False).returncode != 0 and exists(ns):
                    problems.append(f"could not delete network namespace {ns}")
        for dev in reversed(self.root_devices):
            runner.run(["ip", "link", "del", dev], check=False)
        self.namespaces.clear()
        self.root_devices.clear()
        return problems


def kill_namespace_processes(ns: str, timeout: float = 5.0) -> None:
    """TERM, then KILL, every process inside namespace NS (a namespace this program created)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        found = pids(ns)
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while found and time.monotonic() < deadline:
            found = [p for p in found if _alive(p)]
            time.sleep(0.05)
        if not found:
            return


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def call_in(ns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """FN(*ARGS) with its sockets in network namespace NS (None: here).

    setns() moves only the calling thread, so FN runs in a short-lived thread: sockets it opens stay in NS
    for their whole life, and the rest of the program (and its subprocesses) stays where it was. This is how
    programs run on the host reach nodes of a cluster network that lives in a namespace (the lab).
    """
    if ns is None:
        return fn(*args, **kwargs)
    path = f"/run/netns/{check_ifname(ns)}"
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            outcome["error"] = CommandError(f"network namespace {ns} does not exist")
            return
        try:
            if _libc().setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                outcome["error"] = CommandError(f"cannot enter network namespace {ns}: {os.strerror(err)}")
                return
        finally:
            os.close(fd)
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
