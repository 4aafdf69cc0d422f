"""kestrel-switch for real: two servers' bridges joined through a hub, traffic visibly crossing the hub."""

from __future__ import annotations

import json
import subprocess

from kestrel import runner
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.treestate import dry_run, kestrel

HUB, SRV1, SRV2 = "172.31.250.1", "172.31.250.11", "172.31.250.12"


def kestrel_switch(root: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    return kestrel("switch", root.root, *args)


def ping(ns: str, address: str) -> bool:
    return runner.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", address], via=runner.Netns(ns), check=False).ok


def test_switch_joins_two_servers_through_the_hub(tree: Sysroot, topology: Topology) -> None:
    p = topology.prefix
    ul = topology.add_netns("ul")
    underlay = topology.add_bridge(ul, "ulbr")
    hosts = {}
    for role, address in (("hub", HUB), ("s1", SRV1), ("s2", SRV2)):
        ns = topology.add_netns(role)
        topology.add_veth(ul, f"u{role}", ns, "eth", master_a=underlay, address_b=f"{address}/24")
        hosts[role] = ns
    config = tree.path("/etc/kestrel/kestrel.yaml")
    config.write_text(
        config.read_text()
        + (
            f"switch:\n  hub: {HUB}\n  underlay_interface: {p}eth\n  bridge: {p}br\n  device_prefix: kv-\n"
            f"  servers:\n    - {{name: s1, address: {SRV1}}}\n    - {{name: s2, address: {SRV2}}}\n"
        )
    )

    assert dry_run("switch", tree.root, "up", "--netns", hosts["s1"], "--dry-run") == [
        f"Would run ip link add {p}br type bridge stp_state 0 forward_delay 0",
        f"Would run ip link set {p}br mtu 1450 up",
        f"Would run ip link add kv-0 type vxlan id 100 remote {HUB} local {SRV1} dstport 4789 dev {p}eth",
        f"Would run ip link set kv-0 master {p}br",
        "Would run ip link set kv-0 mtu 1450 up",
    ]
    assert f"{p}br" not in runner.run(["ip", "-br", "link"], via=runner.Netns(hosts["s1"])).stdout
    for role in ("hub", "s1", "s2"):
        proc = kestrel_switch(tree, "up", "--netns", hosts[role])
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.splitlines()[-1] == f"Switch {'hub' if role == 'hub' else role}: up"
    again = kestrel_switch(tree, "up", "--netns", hosts["s1"])
    assert again.stderr == "Switch s1: up (nothing to do)\n"

    # One "VM" per server, plugged into that server's cluster bridge.
    vms = {}
    for i, role in enumerate(("s1", "s2"), 1):
        vm = topology.add_netns(f"vm{i}")
        topology.add_veth(hosts[role], f"vp{i}", vm, "vmeth", master_a=f"{p}br", address_b=f"10.98.0.{i}/24")
        runner.run(["ip", "link", "set", f"{p}vmeth", "mtu", "1450"], via=runner.Netns(vm))
        vms[role] = vm
    assert ping(vms["s1"], "10.98.0.2")

    status = kestrel_switch(tree, "status", "--json", "--netns", hosts["hub"])
    assert status.returncode == 0, status.stderr
    rows = {r["device"]: r for r in json.loads(status.stdout)}
    assert set(rows) == {"kv-hub", "kv-s1", "kv-s2"}
    assert rows["kv-s1"]["vni"] == 100 and rows["kv-s2"]["vni"] == 101
    # Echo requests enter the hub from s1 and leave towards s2: the hub carried the traffic.
    assert rows["kv-s1"]["rx_packets"] >= 2 and rows["kv-s2"]["tx_packets"] >= 2

    assert dry_run("switch", tree.root, "up", "--netns", hosts["hub"], "--dry-run") == ["Nothing to do"]
    assert dry_run("switch", tree.root, "down", "--netns", hosts["hub"], "--dry-run") == [
        "Would run ip link del kv-s2",
        "Would run ip link del kv-s1",
        "Would run ip link del kv-hub",
    ]
    assert ping(vms["s1"], "10.98.0.2")
    down = kestrel_switch(tree, "down", "--netns", hosts["hub"])
    assert down.returncode == 0, down.stderr
    assert not ping(vms["s1"], "10.98.0.2")


def test_switch_without_config_section_is_bad_input(tree: Sysroot) -> None:
    proc = kestrel_switch(tree, "status")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"kestrel-switch: {tree.path('/etc/kestrel/kestrel.yaml')}: no 'switch:' section; "
        "see etc-kestrel/kestrel.yaml\n"
    )
