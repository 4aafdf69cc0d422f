"""A switch host and three servers, each a network namespace with its own sshd, joined by a veth underlay,
and a frontend namespace that reaches them: the real SSH and VXLAN code paths of kestrel-switch on one machine
(tests/integration/test_switch.py, bench/bench_switch.py), built with the lab's own parts (kestrel.lab.servers).
Every name starts with PREFIX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kestrel import runner
from kestrel.lab import servers
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.conftest import need_root

PREFIX = "kt-sw-"
UNDERLAY = servers.UNDERLAY
HOSTS = {"sw": 1, "s1": 11, "s2": 12, "s3": 13}  # the switch host, then the servers (one "VM" each)
ETH = f"{PREFIX}eth"  # every host's underlay interface
BRIDGE = f"{PREFIX}br"  # every server's cluster bridge
UP = "kt-sw-up"  # a server's VXLAN to the switch host (device_prefix kt-sw)


def remove_stale(prefix: str = PREFIX) -> None:
    """Namespaces of ours left by a killed run (every name starts with PREFIX)."""
    out = runner.run(["ip", "-j", "netns", "list"], check=False).stdout
    for ns in json.loads(out or "[]"):
        if ns["name"].startswith(prefix):
            netns.kill_namespace_processes(ns["name"])
            runner.run(["ip", "netns", "del", ns["name"]], check=False)


def topology(prefix: str = PREFIX) -> Iterator[Topology]:
    """A Topology of PREFIX for a test (as root), whatever a killed run left removed first; destroyed after."""
    need_root()
    remove_stale(prefix)
    t = Topology(prefix=prefix)
    try:
        yield t
    finally:
        problems = t.destroy()
        assert not problems, problems


@dataclass
class Lab:
    root: Sysroot
    frontend: str
    ns: dict[str, str]  # host -> its namespace
    host_keys: dict[str, Path]

    def switch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """kestrel-switch run on the frontend (its namespace reaches the servers over the underlay)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
        argv = [sys.executable, "-m", "kestrel.cli.switch", "--root", str(self.root.root), *args]
        return subprocess.run(
            runner.netns_argv(self.frontend, argv), capture_output=True, text=True, timeout=timeout, env=clean
        )

    def status(self) -> dict[tuple[str, str], dict]:
        proc = self.switch("status", "--json")
        assert proc.returncode == 0, proc.stderr
        return {(r["server"], r["device"]): r for r in json.loads(proc.stdout)}


def build(topo: Topology, tree: Sysroot) -> Lab:
    spaces = servers.build_underlay(topo, {"fe": 2, **HOSTS})
    key = servers.ensure_key(tree.path("/root/.ssh/id_ed25519"))
    keys = {
        name: servers.start_sshd(
            tree, name, spaces[name], f"{UNDERLAY}.{octet}", Path(f"{key}.pub"), "/var/tmp/servers"
        )
        for name, octet in HOSTS.items()
    }
    servers_ = "".join(
        f"  - {{name: {n}, address: {UNDERLAY}.{o}, underlay_interface: {ETH}, nodes: {0 if n == 'sw' else 1}}}\n"
        for n, o in HOSTS.items()
    )
    config = tree.path("/etc/kestrel/kestrel.yaml")
    config.write_text(
        config.read_text() + f"servers:\n{servers_}switch: {{server: sw, bridge: {BRIDGE}, device_prefix: kt-sw}}\n"
    )
    return Lab(tree, spaces["fe"], {n: spaces[n] for n in HOSTS}, keys)


fingerprint = servers.fingerprint


def stop(lab: Lab) -> None:
    servers.stop_sshds(lab.root, list(HOSTS))


def trust_all(lab: Lab) -> None:
    for name, host_key in lab.host_keys.items():
        proc = lab.switch("trust", name, "--fingerprint", fingerprint(host_key))
        if proc.returncode != 0:
            raise AssertionError(proc.stderr)


def add_vms(topo: Topology, lab: Lab, mtu: int = 1450) -> dict[str, str]:
    """One "VM" namespace per server (10.98.0.N), plugged into its cluster bridge at the overlay MTU."""
    vms = {}
    for i, server in enumerate(("s1", "s2", "s3"), 1):
        vm = topo.add_netns(f"vm{i}")
        topo.add_veth(lab.ns[server], "vp", vm, "ve", master_a=BRIDGE, address_b=f"10.98.0.{i}/24")
        runner.run(["ip", "link", "set", f"{PREFIX}ve", "mtu", str(mtu)], via=runner.Netns(vm))
        vms[server] = vm
    return vms
