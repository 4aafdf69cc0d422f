"""The cluster's status per node: boot stage and since when, last seen, booted image version and drift, uptime
and load; from the registry, node state, leases, the boot logs and the SSH probes (read only, never an SSH
connection here)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from kestrel import vocabulary
from kestrel.config import Config
from kestrel.frontend import dnsmasq, firewall, nginx
from kestrel.images import store
from kestrel.nodes import bootlog, leases, probes, registry, stages
from kestrel.nodes import state as nodestate
from kestrel.nodes.probes import Probes
from kestrel.nodes.registry import Node
from kestrel.nodes.stages import Event, Stage
from kestrel.nodes.state import States
from kestrel.sysroot import Sysroot

_VERSION_ROOT = re.compile(r"/([^/]+)\.versions/([^/]+)/?$")


@dataclass(frozen=True)
class NodeStatus:
    name: str
    mac: str
    ip: str
    group: str
    image: str
    state: str  # up, booting, down, unknown
    stage: Stage
    since: float | None
    last_seen: float | None
    booted_version: str | None
    current_version: str | None
    uptime: float | None
    load: tuple[float, float, float] | None
    # the firewall module's packets: (accepted from its MAC + address pair, None if not in the set; refused)
    firewall: tuple[int | None, int] | None = None

    @property
    def drift(self) -> bool | None:
        """Booted another version than the current one of its image (a reboot updates it); None if unknown."""
        if self.booted_version is None or self.current_version is None:
            return None
        return self.booted_version != self.current_version

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mac": self.mac,
            "ip": self.ip,
            "group": self.group,
            "image": self.image,
            "state": self.state,
            "stage": str(self.stage),
            "stage_since": iso(self.since),
            "last_seen": iso(self.last_seen),
            "booted_version": self.booted_version,
            "current_version": self.current_version,
            "drift": self.drift,
            "uptime_seconds": None if self.uptime is None else int(self.uptime),
            "load": list(self.load) if self.load else None,
        } | ({} if self.firewall is None else {"firewall": firewall_json(self.firewall)})


def firewall_json(found: tuple[int | None, int]) -> dict[str, Any]:
    return {"accepted_packets": found[0], "in_node_set": found[0] is not None, "refused_packets": found[1]}


def iso(at: float | None) -> str | None:
    """ISO-8601 UTC, seconds: 2026-12-02T14:53:38Z."""
    return vocabulary.iso_utc(at)


def version_of_root(path: str | None) -> tuple[str, str] | None:
    """(image, version) of an image root such as /srv/kestrel/images/NAME.versions/VERSION."""
    m = _VERSION_ROOT.search(path or "")
    return (m[1], m[2]) if m else None


@dataclass(frozen=True)
class Inputs:
    """Everything status reads, so that compute() is pure."""

    nodes: list[Node]
    states: States
    leases: list[leases.Lease]
    events: list[Event]
    probes: Probes
    current: dict[str, str]  # image -> current version
    firewall: firewall.Live | None = None  # the firewall module's table, read from nft


def read_inputs(root: Sysroot, config: Config, now: float, probed: Probes | None = None) -> Inputs:
    """The files status reads: registry, node state, leases, the tails of dnsmasq's and nginx's logs, probes."""
    text = bootlog.read_tail(root.path(config.network.leases_file), 1 << 22)
    found, _ = leases.parse_leases(text)
    events = bootlog.parse_access_log(bootlog.read_tail(root.path(nginx.ACCESS_LOG)))
    events += bootlog.parse_dnsmasq_log(bootlog.read_tail(root.path(dnsmasq.LOG_PATH)), now)
    return Inputs(
        registry.load_registry(root),
        nodestate.load_states(root),
        found,
        events,
        probes.load_probes(root) if probed is None else probed,
        {i.name: i.version for i in store.published_images(root)},
        firewall.read_live(root, config) if firewall.enabled(config) else None,
    )


def progress_by_mac(inputs: Inputs) -> dict[str, stages.Progress]:
    """Each registered node's boot progress from the log events and its probe record."""
    macs_by_ip = {str(lease.ip): lease.mac for lease in leases.latest_by_mac(inputs.leases)}
    macs_by_ip |= {str(n.ip): n.mac for n in inputs.nodes}
    grouped = stages.by_node(inputs.events, macs_by_ip)
    out = {}
    for n in inputs.nodes:
        probe = inputs.probes.get(n.mac)
        own = grouped.get(n.mac, [])
        if probe:
            own = own + probes.events(probe, version_of_root(probe.root))
        out[n.mac] = stages.derive(own)
    return out


def compute(inputs: Inputs, now: float) -> list[NodeStatus]:
    """One row per registered node, in natural name order (node2 before node10)."""
    progress = progress_by_mac(inputs)
    rows = []
    for n in sorted(inputs.nodes, key=registry.natural_key):
        p = progress[n.mac]
        s = inputs.states.get(n.mac, nodestate.NodeState())
        probe = inputs.probes.get(n.mac, probes.Probe())
        seen = [t for t in (p.last_seen, s.last_seen, probe.ok_at) if t is not None]
        booted = (p.image, p.version) if p.version else version_of_root(probe.root or s.root)
        up = p.stage is Stage.SSH
        rows.append(
            NodeStatus(
                name=n.name,
                mac=n.mac,
                ip=str(n.ip),
                group=n.group,
                image=n.image,
                state=_state(p.stage, s),
                stage=p.stage,
                since=p.since,
                last_seen=max(seen) if seen else None,
                booted_version=_booted(booted, n.image),
                current_version=inputs.current.get(n.image),
                uptime=now - probe.booted_at if up and probe.booted_at else None,
                load=probe.load if up else None,
                firewall=firewall.counts(inputs.firewall, n.mac, n.ip) if inputs.firewall else None,
            )
        )
    return rows


def _state(stage: Stage, s: nodestate.NodeState) -> str:
    if stage is Stage.SSH:
        return "up"
    if stage is Stage.DOWN:
        return "down"
    if stages.is_booting(stage):
        return "booting"
    return "down" if s.state is nodestate.State.DOWN else "unknown"


def _booted(booted: tuple[str | None, str | None] | None, image: str) -> str | None:
    """The version it booted; a version of another image than its registered one is shown as IMAGE/VERSION."""
    if not booted or not booted[1]:
        return None
    name, version = booted
    return version if name in (None, image) else f"{name}/{version}"


def status(root: Sysroot, config: Config, probed: Probes | None = None, now: float | None = None) -> list[NodeStatus]:
    now = time.time() if now is None else now
    return compute(read_inputs(root, config, now, probed), now)


def images_in_use(rows: list[NodeStatus]) -> list[dict[str, Any]]:
    """Per image: its current version and, per booted version, the nodes that run it."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(r.image, {"name": r.image, "current_version": r.current_version, "versions": {}})
        if r.state == "up" and r.booted_version:
            entry["versions"].setdefault(r.booted_version, []).append(r.name)
    return [
        {**e, "versions": [{"version": v, "nodes": names} for v, names in sorted(e["versions"].items())]}
        for _, e in sorted(out.items())
    ]
