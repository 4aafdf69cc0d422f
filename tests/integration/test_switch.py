"""kestrel-switch for real: a switch host and three servers, each a network namespace with its own sshd on a veth
underlay, built over SSH from a frontend namespace; traffic between servers visibly crosses the switch host."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from kestrel import runner
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.integration import switchlab
from tests.integration.switchlab import ETH, PREFIX, UNDERLAY, UP, fingerprint
from tests.treestate import kestrel


@pytest.fixture
def topo() -> Iterator[Topology]:
    yield from switchlab.topology(PREFIX)


def ping(ns: str, address: str, *args: str) -> runner.Result:
    return runner.run(
        ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", *args, address], via=runner.Netns(ns), check=False
    )


def links(ns: str) -> set[str]:
    return {link["ifname"] for link in json.loads(runner.run(["ip", "-j", "link"], via=runner.Netns(ns)).stdout)}


ARP_TARGET = bytes([10, 98, 0, 77])  # nobody has it: the request is only flooded


def _capture(device: str) -> socket.socket:
    # ETH_P_ALL: a bridge port hands its frames to the bridge before any socket of one protocol sees them
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((device, 0))
    s.setblocking(False)
    return s


def _send_arp(device: str) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((device, 0))
        mac = s.getsockname()[4]
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, bytes([10, 98, 0, 1]), b"\0" * 6, ARP_TARGET)
        s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)


def _arrived(s: socket.socket) -> int:
    """Requests for ARP_TARGET that came in (not the ones this host sent out)."""
    count = 0
    while True:
        try:
            data, addr = s.recvfrom(65535)
        except BlockingIOError:
            return count
        if addr[2] != socket.PACKET_OUTGOING and data[12:14] == b"\x08\x06" and data[38:42] == ARP_TARGET:
            count += 1


def test_switch_over_ssh_joins_three_servers_through_the_switch_host(topo: Topology, tree: Sysroot) -> None:
    started = time.monotonic()
    lab = switchlab.build(topo, tree)
    try:
        # First contact is explicit: an unknown host key is refused, a wrong fingerprint records nothing.
        refused = lab.switch("up")
        assert refused.returncode == 1 and "is not trusted; check it, then kestrel-switch trust" in refused.stderr
        wrong = lab.switch("trust", "s1", "--fingerprint", "SHA256:nope")
        assert wrong.returncode == 2 and "not trusted (nothing recorded)" in wrong.stderr
        for name, host_key in lab.host_keys.items():
            ok = lab.switch("trust", name, "--fingerprint", fingerprint(host_key))
            assert ok.returncode == 0, ok.stderr
            assert ok.stdout == f"{name}: host key fingerprint {fingerprint(host_key)}\n"

        dry = lab.switch("up", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert (
            f"sw: ip link add kt-sws1 type vxlan id 100 remote {UNDERLAY}.11 local {UNDERLAY}.1 dstport 4789 dev {ETH}"
            in dry.stdout
        )
        assert f"s3: nft table inet kestrel_switch: UDP 4789 from {UNDERLAY}.1 only" in dry.stdout
        assert "kt-sw-hub" not in links(lab.ns["sw"])

        t0 = time.monotonic()
        up = lab.switch("up")
        up_seconds = time.monotonic() - t0
        assert up.returncode == 0, up.stderr
        assert up.stderr.splitlines()[-1] == "Switch up, MTU 1450: changed sw, s1, s2, s3"
        assert up_seconds < 10, up_seconds

        # One "VM" per server, plugged into its cluster bridge at the overlay MTU.
        vms = switchlab.add_vms(topo, lab)
        for a, vm in vms.items():
            for j, b in enumerate(vms, 1):
                if a != b:
                    result = ping(vm, f"10.98.0.{j}")
                    assert " 0% packet loss" in result.stdout, (a, b, result.stdout)

        # One ARP broadcast from s1's VM reaches each other server exactly once and never comes back to s1.
        caps = {s: netns.call_in(lab.ns[s], _capture, UP) for s in ("s1", "s2", "s3")}
        netns.call_in(vms["s1"], _send_arp, f"{PREFIX}ve")
        time.sleep(1)
        assert {s: _arrived(c) for s, c in caps.items()} == {"s1": 0, "s2": 1, "s3": 1}
        for c in caps.values():
            c.close()

        # s2 -> s3 traffic enters the switch host from s2 and leaves it towards s3.
        before = lab.status()
        assert before[("s2", UP)]["vni"] == 101 and before[("s2", UP)]["mtu"] == 1450
        assert ping(vms["s2"], "10.98.0.3", "-c", "5").ok
        after = lab.status()
        assert after[("sw", "kt-sws2")]["rx_packets"] - before[("sw", "kt-sws2")]["rx_packets"] >= 5
        assert after[("sw", "kt-sws3")]["tx_packets"] - before[("sw", "kt-sws3")]["tx_packets"] >= 5

        # MTU: a 1450-byte DF packet passes, one byte more is refused with an error (not silently dropped).
        assert ping(vms["s1"], "10.98.0.2", "-M", "do", "-s", "1422").ok
        too_big = ping(vms["s1"], "10.98.0.2", "-M", "do", "-s", "1423")
        assert not too_big.ok and "message too long" in too_big.stdout + too_big.stderr

        # A VXLAN sender that is not a peer of s1 (a rogue host on the underlay) is dropped by s1's filter.
        rogue = topo.add_netns("rg")
        topo.add_veth(topo.name("ul"), "urg", rogue, "eth", master_a=f"{PREFIX}ulbr", address_b=f"{UNDERLAY}.66/24")
        vx = ["ip", "link", "add", f"{PREFIX}rx", "type", "vxlan", "id", "100", "remote", f"{UNDERLAY}.11"]
        via = runner.Netns(rogue)
        runner.run([*vx, "local", f"{UNDERLAY}.66", "dstport", "4789", "dev", ETH], via=via)
        runner.run(["ip", "addr", "add", "10.98.0.66/24", "dev", f"{PREFIX}rx"], via=via)
        runner.run(["ip", "link", "set", f"{PREFIX}rx", "mtu", "1450", "up"], via=via)
        dropped = lab.status()[("s1", UP)]["dropped"]
        assert not ping(rogue, "10.98.0.1").ok
        assert lab.status()[("s1", UP)]["dropped"] > dropped

        # A second up changes nothing and says so.
        kept = {n: links(ns) for n, ns in lab.ns.items()}
        again = lab.switch("up")
        assert again.returncode == 0, again.stderr
        assert again.stderr == "Switch up, MTU 1450: nothing changed\n"
        assert {n: links(ns) for n, ns in lab.ns.items()} == kept

        down = lab.switch("down")
        assert down.returncode == 0, down.stderr
        for name, ns in lab.ns.items():
            assert not {d for d in links(ns) if d.startswith("kt-sw") and d not in (ETH, f"{PREFIX}vp")}, name
            tables = runner.run(["nft", "list", "tables"], via=runner.Netns(ns)).stdout
            assert "kestrel_switch" not in tables
        assert lab.switch("down").stderr == "Switch down: nothing to remove\n"
        print(f"kestrel-switch up: {up_seconds:.2f} s; whole test {time.monotonic() - started:.1f} s")
    finally:
        switchlab.stop(lab)


def test_switch_without_config_section_is_bad_input(tree: Sysroot) -> None:
    proc = kestrel("switch", tree.root, "status")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"kestrel-switch: {tree.path('/etc/kestrel/kestrel.yaml')}: no 'switch:' section; "
        "see etc-kestrel/kestrel.yaml\n"
    )
