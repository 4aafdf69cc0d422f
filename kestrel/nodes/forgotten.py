"""Nodes an admin removed, by MAC: their leases must not register them again.

dnsmasq keeps a removed node's lease and reports it as `old` when it starts again (the lease hook drops those
for a forgotten MAC) and when the reload that follows the removal takes the name off the lease; with
nodes.auto_register those events would bring the node straight back. An event queued before the removal, or an
`old` within GRACE seconds after it, is ignored; later, a machine that asks for its lease again is alive and
registers again like any new one. Entries go after a week: by then every lease the node held has expired.
"""

from __future__ import annotations

import json

from kestrel import names
from kestrel.errors import InputError
from kestrel.nodes.leasequeue import LeaseEvent
from kestrel.sysroot import Sysroot

FORGOTTEN_PATH = "/var/lib/kestrel/forgotten.json"
KEPT_SECONDS = 7 * 24 * 3600
GRACE = 10  # seconds after a removal in which dnsmasq's reload reports the node's lease as `old`

Forgotten = dict[str, int]  # MAC -> when it was removed, seconds since the epoch


def update(forgotten: Forgotten, before: set[str], after: set[str], now: int) -> Forgotten:
    """FORGOTTEN once the registry went from the MACs BEFORE to AFTER at NOW: removed MACs are added, registered
    ones leave, week-old entries expire."""
    kept = {mac: t for mac, t in forgotten.items() if mac not in after and now - t < KEPT_SECONDS}
    return kept | dict.fromkeys(sorted(before - after), now)


def ignores(forgotten: Forgotten, event: LeaseEvent) -> bool:
    """Whether EVENT is about a removed node and must not register it: an event from before the removal (still
    queued when the admin removed it), or the `old` of the reload that followed it."""
    removed = forgotten.get(event.mac)
    if removed is None:
        return False
    return event.time <= removed + (GRACE if event.action == "old" else 0)


def format_forgotten(forgotten: Forgotten) -> bytes:
    return (json.dumps({"version": 1, "removed": forgotten}, indent=1, sort_keys=True) + "\n").encode()


def load_forgotten(root: Sysroot) -> Forgotten:
    data = root.read(FORGOTTEN_PATH)
    if not data:
        return {}
    try:
        return {names.normalize_mac(mac): int(t) for mac, t in json.loads(data)["removed"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{root.sys(FORGOTTEN_PATH)}: not a list Kestrel wrote ({e}); fix or remove it") from None
