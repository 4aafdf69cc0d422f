"""A switch host and three servers, each a network namespace with its own sshd, joined by a veth underlay,
and a frontend namespace that reaches them: the real SSH and VXLAN code paths of kestrel-switch on one machine
(tests/integration/test_switch.py, bench/bench_switch.py). Every name starts with PREFIX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot

PREFIX = "kt-sw-"
UNDERLAY = "172.31.240"
HOSTS = {"sw": 1, "s1": 11, "s2": 12, "s3": 13}  # the switch host, then the servers (one "VM" each)
ETH = f"{PREFIX}eth"  # every host's underlay interface
BRIDGE = f"{PREFIX}br"  # every server's cluster bridge
UP = "kt-sw-up"  # a server's VXLAN to the switch host (device_prefix kt-sw)
SSHD = 'mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"'


def remove_stale() -> None:
    """Namespaces of ours left by a killed run (every name starts with PREFIX)."""
    out = runner.run(["ip", "-j", "netns", "list"], check=False).stdout
    for ns in json.loads(out or "[]"):
        if ns["name"].startswith(PREFIX):
            netns.kill_namespace_processes(ns["name"])
            runner.run(["ip", "netns", "del", ns["name"]], check=False)


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
    ul = topo.add_netns("ul")
    bridge = topo.add_bridge(ul, "ulbr")
    spaces = {}
    for name, octet in [("fe", 2), *HOSTS.items()]:
        ns = topo.add_netns(name)
        topo.add_veth(ul, f"u{name}", ns, "eth", master_a=bridge, address_b=f"{UNDERLAY}.{octet}/24")
        spaces[name] = ns
    key = tree.path("/root/.ssh/id_ed25519")
    key.parent.mkdir(parents=True)
    runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    keys = {}
    for name, octet in HOSTS.items():
        work = tree.path(f"/var/tmp/servers/{name}")
        work.mkdir(parents=True)
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key")])
        keys[name] = work / "host_key"
        conf = work / "sshd_config"
        conf.write_text(
            f"ListenAddress {UNDERLAY}.{octet}\nHostKey {work}/host_key\nPidFile none\nUsePAM no\n"
            f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            f"AuthorizedKeysFile {key}.pub\nStrictModes no\nMaxStartups 100:30:200\n"
        )
        record = supervisor.start(
            tree, f"sshd-{name}", ["sh", "-c", SSHD, "sh", str(conf)], netns=spaces[name], private_run=True
        )
        assert supervisor.wait_for_log(record, "Server listening", 20), Path(record.log).read_text()[-500:]
    servers = "".join(
        f"  - {{name: {n}, address: {UNDERLAY}.{o}, underlay_interface: {ETH}, nodes: {0 if n == 'sw' else 1}}}\n"
        for n, o in HOSTS.items()
    )
    config = tree.path("/etc/kestrel/kestrel.yaml")
    config.write_text(
        config.read_text() + f"servers:\n{servers}switch: {{server: sw, bridge: {BRIDGE}, device_prefix: kt-sw}}\n"
    )
    return Lab(tree, spaces["fe"], {n: spaces[n] for n in HOSTS}, keys)


def fingerprint(host_key: Path) -> str:
    return runner.run(["ssh-keygen", "-l", "-f", f"{host_key}.pub"]).stdout.split()[1]


def stop(lab: Lab) -> None:
    for name in HOSTS:
        supervisor.stop(lab.root, f"sshd-{name}", timeout=5)


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
