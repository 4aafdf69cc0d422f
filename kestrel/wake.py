"""Wake-on-LAN: magic packets to the cluster network's broadcast, and the listener that wakes qemu nodes.

Sending uses the wakeonlan library to the subnet-directed broadcast (its interface= is a source IP, and
255.255.255.255 only leaves by the default route). When the cluster network lives in a namespace (the
lab), the packets are sent from inside it. The listener reads every frame on the bridge (AF_PACKET, so
UDP/7, UDP/9 and raw EtherType 0x0842 all count and the bridge needs no address) and starts the defined
VM whose MAC is in a magic packet, which makes `kestrel-nodes wake` work for virtual nodes too.
"""

from __future__ import annotations

import select
import socket
import sys
import time
from collections.abc import Callable, Iterable

import wakeonlan

from kestrel import names, netns, power
from kestrel.config import Config
from kestrel.errors import CommandError, InputError
from kestrel.registry import Node
from kestrel.services import process
from kestrel.sysroot import Sysroot

PORT = 9
_ETH_P_ALL = 0x0003
_SYNC = b"\xff" * 6


def find_magic_macs(frame: bytes) -> set[str]:
    """MACs for which FRAME holds a magic packet: 6 x 0xff, then the MAC 16 times."""
    found = set()
    start = frame.find(_SYNC)
    while start != -1 and start + 102 <= len(frame):
        mac = frame[start + 6:start + 12]
        if mac != _SYNC[:6] and frame[start + 6:start + 102] == mac * 16:
            found.add(":".join(f"{b:02x}" for b in mac))
        start = frame.find(_SYNC, start + 1)
    return found


def select_targets(nodes: list[Node], names_: Iterable[str], group: str | None, everything: bool,
                   macs: Iterable[str]) -> list[tuple[str, str]]:
    """(label, MAC) of the nodes chosen by name, group, all, or bare MACs; in registry order, no repeats."""
    names_, macs = list(names_), list(macs)
    if not (names_ or group or everything or macs):
        raise InputError("wake: name the nodes, or give --group GROUP, --all or --mac MAC")
    by_name = {n.name: n for n in nodes}
    unknown = [n for n in names_ if n not in by_name]
    if unknown:
        raise InputError(f"wake: no registered node named {', '.join(map(repr, unknown))} (see kestrel-nodes list)")
    chosen = [n for n in nodes if everything or n.name in names_ or n.group == group]
    if group and not any(n.group == group for n in nodes):
        raise InputError(f"wake: no node in group {group!r}")
    found = [(n.name, n.mac) for n in chosen]
    for text in macs:
        try:
            mac = names.normalize_mac(text)
        except ValueError as e:
            raise InputError(f"--mac: {e}") from None
        known = next((n.name for n in nodes if n.mac == mac), "")
        found.append((known, mac))
    unique: dict[str, str] = {}
    for label, mac in found:
        unique.setdefault(mac, label)
    return [(label, mac) for mac, label in unique.items()]


def send_magic(config: Config, macs: Iterable[str], stagger: float = 0.0,
               say: Callable[[str], None] = print, labels: dict[str, str] | None = None) -> int:
    """One magic packet per MAC to the cluster network's broadcast, STAGGER seconds apart; returns the count."""
    broadcast = str(config.network.network.broadcast_address)
    sent = 0
    for mac in macs:
        mac = names.normalize_mac(mac)
        if sent and stagger > 0:
            time.sleep(stagger)
        try:
            netns.call_in(config.network.netns, wakeonlan.wake, mac, host=broadcast, port=PORT)
        except OSError as e:
            raise CommandError(f"cannot send a magic packet to {broadcast}:{PORT}: {e.strerror or e}") from None
        label = (labels or {}).get(mac)
        say(f"Sent magic packet for {label + ' (' + mac + ')' if label else mac} to {broadcast}:{PORT}")
        sent += 1
    return sent


def open_listener(bridge: str, ns: str | None) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        try:
            s.bind((bridge, 0))
        except OSError:
            s.close()
            raise
        return s

    try:
        return netns.call_in(ns, make)
    except OSError as e:
        where = f" in network namespace {ns}" if ns else ""
        raise CommandError(f"cannot listen on {bridge}{where}: {e.strerror or e}") from None


def wake_vms(root: Sysroot, macs: set[str], bridge: str, ns: str | None,
             say: Callable[[str], None]) -> list[str]:
    """Start the stopped VMs on BRIDGE/NS whose MAC is in MACS; return their names."""
    started = []
    for spec in power.list_vms(root):
        if spec.mac not in macs or spec.bridge != bridge or spec.netns != ns:
            continue
        if power.is_running(root, spec.name):
            say(f"Magic packet for {spec.name} ({spec.mac}): already running")
            continue
        try:
            power.start_vm(root, spec)
        except CommandError as e:
            say(f"Magic packet for {spec.name} ({spec.mac}): cannot start it: {e}")
            continue
        say(f"Magic packet for {spec.name} ({spec.mac}): started")
        started.append(spec.name)
    return started


def listen(root: Sysroot, bridge: str, ns: str | None, say: Callable[[str], None],
           until: Callable[[], bool] = lambda: False) -> None:
    """Wake VMs on magic packets seen on BRIDGE until UNTIL() is true (checked about once a second)."""
    sock = open_listener(bridge, ns)
    say(f"Listening for magic packets on {bridge}" + (f" in network namespace {ns}" if ns else ""))
    recent: dict[str, float] = {}
    try:
        while not until():
            ready, _, _ = select.select([sock], [], [], 1.0)
            process.reap()
            if not ready:
                continue
            macs = find_magic_macs(sock.recv(65535))
            now = time.monotonic()
            # The same packet is seen once per bridge port it crosses: act on a MAC once a second at most.
            fresh = {m for m in macs if now - recent.get(m, -10.0) > 1.0}
            recent.update({m: now for m in fresh})
            if fresh:
                wake_vms(root, fresh, bridge, ns, say)
    finally:
        sock.close()


LISTENER = "vm-listener"


def start_listener(root: Sysroot, config_path: str, bridge: str, ns: str | None) -> process.Record | None:
    """The listener as a supervised background process of ROOT; None if one already runs."""
    if process.find(root, LISTENER):
        return None
    argv = [sys.executable, "-m", "kestrel.cli.vm", "--root", str(root.root), "--config", config_path,
            "listen", "--bridge", bridge, *(["--netns", ns] if ns else [])]
    record = process.start(root, LISTENER, argv)
    if not process.wait_for_log(record, "Listening for magic packets", timeout=30):
        process.stop(root, LISTENER)
        raise CommandError(f"the Wake-on-LAN listener did not start; see {record.log}")
    return record
