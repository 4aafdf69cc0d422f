"""qemu nodes for real: kestrel-vm start/stop by pid, and the Wake-on-LAN listener starting a stopped VM.

The VMs only get as far as their firmware here (there is no DHCP server): that is enough to see that qemu
runs with its tap on the bridge and its serial console logged.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kestrel import supervisor
from kestrel.config import load_config
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.nodes import wake
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import listener, qemu
from tests.conftest import eventually, write_config
from tests.treestate import dry_run, kestrel

BIN = Path(sys.executable).parent


def _lab_config(tree: Sysroot, bridge: str, ns: str) -> Path:
    return write_config(
        tree,
        f"""
network: {{interface: {bridge}, netns: {ns}, address: 10.77.0.1/24, dhcp_range: [10.77.0.100, 10.77.0.150]}}
vm: {{memory: 256}}
""",
    )


def _links(ns: str) -> str:
    return netns.runner.run(["ip", "-n", ns, "-br", "link"]).stdout


def test_start_and_stop_exactly_that_vm(tree: Sysroot, topology: Topology) -> None:
    ns = topology.add_netns("fe")
    bridge = topology.add_bridge(ns, "br", "10.77.0.1/24")
    config = load_config(_lab_config(tree, bridge, ns))
    spec = vm_definitions.define_vm(tree, config, "vm1")
    try:
        record = qemu.start_vm(tree, spec)
        assert record is not None and qemu.start_vm(tree, spec) is None
        assert f"{spec.tap}@" not in _links(ns) and spec.tap in _links(ns)
        console = qemu.console_path(tree, "vm1")
        assert eventually(lambda: "iPXE" in console.read_text(errors="replace"), 60), console.read_text()
        assert netns.pids(ns) and record.pid in {p for p in netns.pids(ns)} | {record.pid}
        assert qemu.stop_vm(tree, "vm1")
        assert not qemu.is_running(tree, "vm1") and spec.tap not in _links(ns)
        assert not qemu.stop_vm(tree, "vm1")
    finally:
        qemu.stop_vm(tree, "vm1")


def test_cli_dry_runs_name_the_tap_and_the_process(tree: Sysroot, topology: Topology) -> None:
    ns = topology.add_netns("fe")
    bridge = topology.add_bridge(ns, "br", "10.77.0.1/24")
    _lab_config(tree, bridge, ns)
    tap = vm_definitions.tap_name("vm1")
    lines = dry_run("vm", tree.root, "start", "vm1", "--dry-run")
    assert lines[:3] == [
        f"Would create {tree.root}/var/lib/kestrel/vms/vm1.json",
        f"Would run ip -n {ns} tuntap add dev {tap} mode tap",
        f"Would run ip -n {ns} link set {tap} master {bridge} up",
    ]
    assert lines[3].startswith("Would start VM vm1: ") and len(lines) == 4
    assert tap not in _links(ns)
    try:
        started = kestrel("vm", tree.root, "start", "vm1")
        assert started.returncode == 0, started.stderr
        record = supervisor.find(tree, "vm-vm1")
        assert record is not None
        # qemu writes its console and log meanwhile: only those may change
        assert dry_run("vm", tree.root, "start", "vm1", "--dry-run", busy=("var/log/kestrel",)) == ["Nothing to do"]
        assert dry_run("vm", tree.root, "stop", "vm1", "--remove", "--dry-run", busy=("var/log/kestrel",)) == [
            f"Would stop VM vm1 (qemu, pid {record.pid})",
            f"Would run ip -n {ns} link del {tap}",
            f"Would remove {tree.root}/var/lib/kestrel/vms/vm1.json",
        ]
        assert qemu.is_running(tree, "vm1") and tap in _links(ns)
        stopped = kestrel("vm", tree.root, "stop", "vm1", "--remove")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stderr.splitlines() == [
            f"Removed {tree.root}/var/lib/kestrel/vms/vm1.json",
            "Stopped vm1 and removed it",
        ]
        assert not qemu.is_running(tree, "vm1") and tap not in _links(ns)
    finally:
        qemu.stop_vm(tree, "vm1")


def test_magic_packet_starts_a_stopped_vm(tree: Sysroot, topology: Topology) -> None:
    ns = topology.add_netns("fe")
    bridge = topology.add_bridge(ns, "br", "10.77.0.1/24")
    path = _lab_config(tree, bridge, ns)
    config = load_config(path)
    spec = vm_definitions.define_vm(tree, config, "sleepy")
    vm_definitions.define_vm(tree, config, "other")
    try:
        record = listener.start_listener(tree, str(path), bridge, ns)
        assert record is not None
        assert not qemu.is_running(tree, "sleepy")
        registry = tree.path("/etc/kestrel/nodes")
        registry.write_text(f"{spec.mac},set:img-default,set:grp-compute,10.77.0.101,node07\n")
        proc = subprocess.run(
            [str(BIN / "kestrel-nodes"), "--root", str(tree.root), "--wake-node", "node07"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == f"Sent magic packet for node07 ({spec.mac}) to 10.77.0.255:9\n"
        assert eventually(lambda: qemu.is_running(tree, "sleepy"), 20), Path(record.log).read_text()
        assert not qemu.is_running(tree, "other")
        time.sleep(1.2)  # the listener acts on one MAC at most once a second
        assert wake.send_magic(config, [spec.mac]) == 1
        assert supervisor.wait_for_log(record, "sleepy (" + spec.mac + "): already running", 10)
    finally:
        supervisor.stop(tree, listener.LISTENER)
        qemu.stop_vm(tree, "sleepy")
        qemu.stop_vm(tree, "other")
    assert not supervisor.find(tree, listener.LISTENER)
