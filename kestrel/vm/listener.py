"""The Wake-on-LAN listener: qemu has no Wake-on-LAN (nor has a container), so this starts the stopped VM or
container node a magic packet names.

It reads every frame on the bridge (AF_PACKET, so UDP/7, UDP/9 and raw EtherType 0x0842 all count and the
bridge needs no address), which makes `kestrel-nodes wake` work for virtual nodes too.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable

from kestrel import runner, supervisor
from kestrel.config import Config
from kestrel.errors import CommandError, KestrelError
from kestrel.net import netns
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import power

logger = logging.getLogger(__name__)

_ETH_P_ALL = 0x0003
_SYNC = b"\xff" * 6


def find_magic_macs(frame: bytes) -> set[str]:
    """MACs for which FRAME holds a magic packet: 6 x 0xff, then the MAC 16 times."""
    found = set()
    start = frame.find(_SYNC)
    while start != -1 and start + 102 <= len(frame):
        mac = frame[start + 6 : start + 12]
        if mac != _SYNC[:6] and frame[start + 6 : start + 102] == mac * 16:
            found.add(":".join(f"{b:02x}" for b in mac))
        start = frame.find(_SYNC, start + 1)
    return found


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


def wake_vms(root: Sysroot, config: Config, macs: set[str], bridge: str, ns: str | None) -> list[str]:
    """Start the stopped VMs on BRIDGE/NS whose MAC is in MACS, and those on servers (their bridges reach this one
    through the switch, so their magic packets cross it); return their names."""
    started = []
    for spec in vm_definitions.list_vms(root):
        if spec.mac not in macs or (not power.is_remote(spec) and (spec.bridge != bridge or spec.netns != ns)):
            continue
        try:
            # a VM on a server: power.start asks there whether it runs, in the same SSH session
            if power.start(root, config, spec) is None:
                logger.info(f"Magic packet for {spec.name} ({spec.mac}): already running")
                continue
        except KestrelError as e:
            logger.info(f"Magic packet for {spec.name} ({spec.mac}): cannot start it: {e}")
            continue
        where = f" on {spec.server}" if spec.server else ""
        logger.info(f"Magic packet for {spec.name} ({spec.mac}): started{where}")
        started.append(spec.name)
    return started


def listen(
    root: Sysroot, config: Config, bridge: str, ns: str | None, until: Callable[[], bool] = lambda: False
) -> None:
    """Wake VMs on magic packets seen on BRIDGE until UNTIL() is true (checked about once a second)."""
    sock = open_listener(bridge, ns)
    logger.info(f"Listening for magic packets on {bridge}" + (f" in network namespace {ns}" if ns else ""))
    recent: dict[str, float] = {}
    try:
        while not until():
            ready, _, _ = select.select([sock], [], [], 1.0)
            supervisor.reap()
            if not ready:
                continue
            macs = find_magic_macs(sock.recv(65535))
            now = time.monotonic()
            # The same packet is seen once per bridge port it crosses: act on a MAC once a second at most.
            fresh = {m for m in macs if now - recent.get(m, -10.0) > 1.0}
            recent.update({m: now for m in fresh})
            if fresh:
                wake_vms(root, config, fresh, bridge, ns)
    finally:
        sock.close()


LISTENER = "vm-listener"


def start_listener(root: Sysroot, config_path: str, bridge: str, ns: str | None) -> supervisor.Record | None:
    """The listener as a supervised background process of ROOT; None if one already runs."""
    if supervisor.find(root, LISTENER):
        return None
    where = ["--bridge", bridge, *(["--netns", ns] if ns else [])]
    argv = runner.kestrel_argv("vm", "--root", str(root.root), "--config", config_path, "listen", *where)
    record = supervisor.start(root, LISTENER, argv)
    if not supervisor.wait_for_log(record, "Listening for magic packets", timeout=30):
        supervisor.stop(root, LISTENER)
        raise CommandError(f"the Wake-on-LAN listener did not start; see {record.log}")
    return record
