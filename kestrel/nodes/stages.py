"""A node's stage in the boot chain, derived purely from events: DHCP leases, TFTP and HTTP fetches, SSH answers.

The chain: registered -> dhcp-lease -> boot-script -> kernel -> initrd -> root-mounted -> ssh-ready; a node
that stopped answering is down. Events come from anywhere (dnsmasq's log, the boot HTTP server's access log,
the lease hook, SSH probes); derive() only orders them, so it does not care how they were collected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    REGISTERED = "registered"
    LEASE = "dhcp-lease"
    SCRIPT = "boot-script"
    KERNEL = "kernel"
    INITRD = "initrd"
    ROOT = "root-mounted"
    SSH = "ssh-ready"
    DOWN = "down"


# Down ranks lowest: whatever comes after it is progress.
RANK = {s: i for i, s in enumerate([Stage.DOWN, *[s for s in Stage if s is not Stage.DOWN]])}
# Fetched only while a node boots: seen again at or below the current stage, they start a new boot.
_BOOT_FETCHES = {Stage.SCRIPT, Stage.KERNEL, Stage.INITRD}


@dataclass(frozen=True)
class Event:
    """Something a node did at AT (seconds since the epoch), known by its MAC or its address."""

    at: float
    stage: Stage
    mac: str | None = None
    ip: str | None = None
    image: str | None = None  # a kernel or initrd fetch names the image and version it boots
    version: str | None = None
    source: str = ""  # dhcp, tftp, http, ssh, check


@dataclass(frozen=True)
class Progress:
    """Where a node is: its stage since when, the image version of its latest boot, and the last time it was seen."""

    stage: Stage = Stage.REGISTERED
    since: float | None = None
    image: str | None = None
    version: str | None = None
    last_seen: float | None = None


def derive(events: Iterable[Event]) -> Progress:
    """The progress of ONE node from its EVENTS (any order; equal times keep their given order).

    A stage moves forward; a boot fetch at or below the current stage is a new boot (a reboot); a DHCP lease
    only starts a boot from down or registered (renewals while up change nothing); DOWN applies to a node that
    was SSH-ready.
    """
    stage, since, image, version, seen = Stage.REGISTERED, None, None, None, None
    for e in sorted(events, key=lambda e: e.at):
        if e.stage is not Stage.DOWN:
            seen = e.at
        forward = RANK[e.stage] > RANK[stage]
        if e.stage in _BOOT_FETCHES:
            if e.stage is Stage.SCRIPT or not forward:
                image = version = None  # a new boot: what the previous one booted no longer holds
        elif e.stage is Stage.LEASE:
            if stage not in (Stage.DOWN, Stage.REGISTERED):
                continue
        elif e.stage is Stage.DOWN:
            if stage is not Stage.SSH:
                continue  # only a node that answered can stop answering; a booting one stays at its stage
        elif not forward:
            continue
        stage, since = e.stage, e.at
        if e.version:
            image, version = e.image, e.version
    return Progress(stage, since, image, version, seen)


def by_node(events: Iterable[Event], macs_by_ip: dict[str, str]) -> dict[str, list[Event]]:
    """EVENTS grouped by MAC; an event known only by its address goes to the MAC that address belongs to
    (MACS_BY_IP: registry and leases); events of unknown machines are dropped."""
    out: dict[str, list[Event]] = {}
    for e in events:
        mac = e.mac or (macs_by_ip.get(e.ip) if e.ip else None)
        if mac:
            out.setdefault(mac, []).append(e)
    return out


def is_booting(stage: Stage) -> bool:
    return stage not in (Stage.REGISTERED, Stage.SSH, Stage.DOWN)
