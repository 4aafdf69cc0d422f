"""kestrel-vm start --server for real: a switch host, two servers and the frontend, each a namespace with its own sshd
(kestrel.lab.servers), joined by kestrel-switch up; qemu started on a server over SSH sends its PXE DHCP request
across the switch to the frontend's bridge, stop kills exactly it, and a magic packet sent on the other server
wakes it through the frontend's listener. No boot: iPXE's first DHCP request is the proof (seconds under TCG)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kestrel.lab import servers
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions, remote
from tests.conftest import eventually
from tests.integration import switchlab
from tests.treestate import kestrel

PREFIX = "kt-vs-"
BRIDGE = f"{PREFIX}br"
HOSTS = {"fe": 2, "sw": 1, "s1": 11, "s2": 12}


@pytest.fixture
def topo() -> Iterator[Topology]:
    yield from switchlab.topology(PREFIX)


def _listen(ns: str, device: str) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((device, 0))
        s.setblocking(False)
        return s

    return netns.call_in(ns, make)


def _dhcp_from(s: socket.socket, mac: str) -> bool:
    """A DHCP request (UDP to port 67) from MAC arrived on S."""
    want = bytes.fromhex(mac.replace(":", ""))
    while True:
        try:
            frame = s.recv(65535)
        except BlockingIOError:
            return False
        # Ethernet, IPv4 (no options: iPXE sends none), UDP destination port 67
        if frame[6:12] == want and frame[12:14] == b"\x08\x00" and frame[23] == 17 and frame[36:38] == b"\x00\x43":
            return True


def _magic(ns: str, device: str, mac: str) -> None:
    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((device, 0))
            payload = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
            s.send(b"\xff" * 6 + s.getsockname()[4] + b"\x08\x42" + payload)

    netns.call_in(ns, send)


def _qemu_pids(ns: str, name: str) -> list[int]:
    found = []
    for pid in netns.pids(ns):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if remote.is_qemu_of([a.decode() for a in argv if a], name):
            found.append(pid)
    return found


def _vm(root: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = kestrel("vm", root, *args, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_vm_on_a_server_boots_across_the_switch_stops_and_wakes(topo: Topology, tree: Sysroot) -> None:
    spaces = servers.build_underlay(topo, HOSTS)
    key = servers.ensure_key(tree.path("/root/.ssh/id_ed25519"))
    keys = {
        n: servers.start_sshd(tree, n, spaces[n], f"{servers.UNDERLAY}.{o}", Path(f"{key}.pub"))
        for n, o in HOSTS.items()
    }
    rows = "".join(
        f"  - {{name: {n}, address: {servers.UNDERLAY}.{o}, underlay_interface: {PREFIX}eth, nodes: "
        f"{1 if n.startswith('s') and n != 'sw' else 0}}}\n"
        for n, o in HOSTS.items()
    )
    config = tree.path("/etc/kestrel/kestrel.yaml")
    text = config.read_text().replace("interface: eth1", f"interface: {BRIDGE}\n  netns: {spaces['fe']}")
    assert f"netns: {spaces['fe']}" in text
    config.write_text(text + f"servers:\n{rows}switch: {{server: sw, bridge: {BRIDGE}, device_prefix: kt-vs}}\n")
    try:
        # the frontend reaches the underlay from its namespace (network.netns): no ip netns exec here
        for name, host_key in keys.items():
            proc = kestrel("switch", tree.root, "trust", name, "--fingerprint", servers.fingerprint(host_key))
            assert proc.returncode == 0, proc.stderr
        proc = kestrel("switch", tree.root, "up")
        assert proc.returncode == 0, proc.stderr
        spec_mac = definitions.vm_mac("vm1")
        sniff = _listen(spaces["fe"], BRIDGE)
        started = time.monotonic()
        rc, _, err = _vm(tree.root, "start", "vm1", "--server", "s1", "--memory", "256")
        assert rc == 0, err
        assert "Started vm1 on s1 (pid" in err
        assert len(_qemu_pids(spaces["s1"], "vm1")) == 1 and not _qemu_pids(spaces["s2"], "vm1")
        # iPXE's DHCP request crossed s1's bridge, the switch host and reached the frontend's bridge
        assert eventually(lambda: _dhcp_from(sniff, spec_mac), 90, 0.5), "no DHCP request from vm1 on the frontend"
        print(f"qemu on s1 to its DHCP request on the frontend: {time.monotonic() - started:.1f} s")
        rc, _, err = _vm(tree.root, "start", "vm1")
        assert rc == 0 and "vm1 is already running on s1" in err, err
        rc, out, _ = _vm(tree.root, "list", "--json")
        (row,) = json.loads(out)
        assert (row["name"], row["server"], row["state"], row["bridge"]) == ("vm1", "s1", "running", BRIDGE)
        rc, out, _ = _vm(tree.root, "console", "vm1")
        assert rc == 0 and "=== kestrel-vm: vm1 started" in out and "iPXE" in out, out[-500:]
        rc, out, _ = _vm(tree.root, "stop", "vm1", "--dry-run")
        assert rc == 0 and f"Would stop VM vm1 on s1 (qemu, pid {_qemu_pids(spaces['s1'], 'vm1')[0]} there)" in out
        rc, _, err = _vm(tree.root, "stop", "vm1")
        assert rc == 0 and "Stopped vm1" in err, err
        assert not _qemu_pids(spaces["s1"], "vm1")
        assert json.loads(_vm(tree.root, "list", "--json")[1])[0]["state"] == "stopped"

        # Wake-on-LAN: the frontend's listener sees the magic packet sent on s2 and starts vm1 on s1
        rc, _, err = _vm(tree.root, "listen", "--background")
        assert rc == 0, err
        _magic(spaces["s2"], BRIDGE, spec_mac)
        assert eventually(lambda: len(_qemu_pids(spaces["s1"], "vm1")) == 1, 30, 0.5), "vm1 was not woken on s1"
        _magic(spaces["s2"], BRIDGE, spec_mac)  # a second packet: still one qemu
        time.sleep(3)
        assert len(_qemu_pids(spaces["s1"], "vm1")) == 1
        log = tree.path("/var/log/kestrel").glob("vm-listener*")
        assert any("Magic packet for vm1" in p.read_text() and "started on s1" in p.read_text() for p in log)
    finally:
        kestrel("vm", tree.root, "listen", "--stop")
        kestrel("vm", tree.root, "stop", "vm1")
        servers.stop_sshds(tree, list(HOSTS))
    assert not _qemu_pids(spaces["s1"], "vm1")
    # a server that cannot be reached: its VMs' state is unknown, the listing still comes
    rc, out, _ = _vm(tree.root, "list", "--json")
    assert rc == 0 and json.loads(out)[0]["state"] == "unknown"


def test_a_server_without_qemu_is_one_line_and_exit_2(topo: Topology, tree: Sysroot) -> None:
    spaces = servers.build_underlay(topo, {"fe": 2, "s1": 11})
    key = servers.ensure_key(tree.path("/root/.ssh/id_ed25519"))
    # this server's sshd hands its sessions a PATH of the usual tools, without qemu
    tools = tree.path("/var/tmp/tools")
    tools.mkdir(parents=True)
    for tool in ("sh", "test", "grep", "cat", "tr", "ip", "mkdir", "printf"):
        found = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert found, tool
        (tools / tool).symlink_to(found)
    host_key = servers.start_sshd(
        tree, "s1", spaces["s1"], f"{servers.UNDERLAY}.11", Path(f"{key}.pub"), extra=f"SetEnv PATH={tools}\n"
    )
    config = tree.path("/etc/kestrel/kestrel.yaml")
    text = config.read_text().replace("interface: eth1", f"interface: {BRIDGE}\n  netns: {spaces['fe']}")
    row = f"{{name: s1, address: {servers.UNDERLAY}.11, underlay_interface: {PREFIX}eth, nodes: 1}}"
    config.write_text(text + f"servers:\n  - {row}\nswitch: {{server: s1, bridge: {BRIDGE}}}\n")
    try:
        proc = kestrel("switch", tree.root, "trust", "s1", "--fingerprint", servers.fingerprint(host_key))
        assert proc.returncode == 0, proc.stderr
        rc, _, err = _vm(tree.root, "start", "vm1", "--server", "s1")
        assert rc == 2
        # the definition is written (as for a VM whose bridge is missing), then the one error line
        assert err.splitlines()[1:] == [
            "kestrel-vm: s1: qemu-system-x86_64 is not installed there (apt-get install qemu-system-x86)"
        ]
    finally:
        servers.stop_sshds(tree, ["s1"])
