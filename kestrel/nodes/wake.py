"""Wake-on-LAN: magic packets to the cluster network's broadcast (kestrel-vm's listener wakes qemu nodes on them).

Sending uses the wakeonlan library to the subnet-directed broadcast (its interface= is a source IP, and
255.255.255.255 only leaves by the default route). When the cluster network lives in a namespace (the
lab), the packets are sent from inside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import wakeonlan

from kestrel import names
from kestrel.config import Config
from kestrel.errors import CommandError, InputError
from kestrel.net import netns
from kestrel.nodes import registry
from kestrel.nodes.registry import Node

logger = logging.getLogger(__name__)

PORT = 9


def select_targets(
    nodes: list[Node], names_: Iterable[str], group: str | None, everything: bool, macs: Iterable[str]
) -> list[tuple[str, str]]:
    """(label, MAC) of the nodes chosen by name, group, all, or bare MACs; in registry order, no repeats."""
    names_, macs = list(names_), list(macs)
    if not (names_ or group or everything or macs):
        raise InputError("wake: name the nodes, or give --group GROUP, --all or --mac MAC")
    chosen = {n.name for n in registry.select_nodes(nodes, names_) if names_}
    chosen |= {n.name for n in registry.select_nodes(nodes, [], group) if group}
    found = [(n.name, n.mac) for n in nodes if everything or n.name in chosen]
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


def send_magic(config: Config, macs: Iterable[str], stagger: float = 0.0, labels: dict[str, str] | None = None) -> int:
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
        logger.info(f"Sent magic packet for {label + ' (' + mac + ')' if label else mac} to {broadcast}:{PORT}")
        sent += 1
    return sent
