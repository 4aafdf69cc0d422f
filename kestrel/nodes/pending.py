"""Machines waiting for approval (nodes.auto_register: approve): one JSON file keyed by MAC, pure updates.

A machine that takes a lease is recorded here instead of registered; `kestrel-nodes approve` registers it,
`reject` forgets it (it comes back if it asks for a lease again). Like Rocks' insert-ethers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from ipaddress import IPv4Address

from kestrel import names
from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

PENDING_PATH = "/var/lib/kestrel/pending.json"


@dataclass(frozen=True)
class Machine:
    mac: str
    ip: IPv4Address  # its last leased address
    first_seen: int  # seconds since the epoch
    last_seen: int


Pending = dict[str, Machine]  # by MAC


def seen(pending: Pending, mac: str, ip: IPv4Address, when: int) -> Pending:
    """PENDING with MAC seen at IP at WHEN (added, or its address and time updated)."""
    have = pending.get(mac)
    new = Machine(mac, ip, when, when) if have is None else replace(have, ip=ip, last_seen=max(when, have.last_seen))
    return {**pending, mac: new}


def select(pending: Pending, macs: list[str]) -> list[Machine]:
    """The machines of MACS ("all": every one), in order; InputError names a MAC that is not pending."""
    if macs == ["all"]:
        return sorted(pending.values(), key=lambda m: (m.first_seen, m.mac))
    out = []
    for text in macs:
        mac = names.parse_mac(text)
        if mac not in pending:
            raise InputError(f"{mac} is not pending (see kestrel-nodes pending)")
        out.append(pending[mac])
    return out


def format_pending(pending: Pending) -> bytes:
    data = {
        "version": 1,
        "machines": {
            m.mac: {k: str(v) if k == "ip" else v for k, v in asdict(m).items() if k != "mac"} for m in pending.values()
        },
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def parse_pending(text: str, where: str = PENDING_PATH) -> Pending:
    try:
        data = json.loads(text)
        return {
            names.normalize_mac(mac): Machine(
                names.normalize_mac(mac), IPv4Address(m["ip"]), int(m["first_seen"]), int(m["last_seen"])
            )
            for mac, m in data["machines"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{where}: not a pending list Kestrel wrote ({e}); fix or remove it") from None


def load_pending(root: Sysroot) -> Pending:
    data = root.read(PENDING_PATH)
    return parse_pending(data.decode("utf-8", "replace"), root.sys(PENDING_PATH)) if data else {}
