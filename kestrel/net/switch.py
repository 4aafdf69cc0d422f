"""The VXLAN switch: one hub host bridges the cluster networks of several servers, so every frame between
nodes on different servers crosses the hub.

The hub has one unicast VXLAN per server, each with its own VNI, all in one bridge (a bridge never sends a
frame back out of the port it came in on: split horizon for free). Each server has one VXLAN to the hub in
its cluster bridge. A host finds its role by which configured underlay address is its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from kestrel import runner
from kestrel.config import SwitchConfig
from kestrel.errors import InputError

VXLAN_PORT = "4789"


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # bridge | vxlan
    vni: int | None = None
    remote: IPv4Address | None = None
    local: IPv4Address | None = None
    master: str | None = None


def role_of(switch: SwitchConfig, local_addresses: set[IPv4Address]) -> str:
    """'hub' or a server's name: the role whose underlay address this host has."""
    if switch.hub in local_addresses:
        return "hub"
    for server in switch.servers:
        if server.address in local_addresses:
            return server.name
    raise InputError("switch: none of this host's addresses is switch.hub or a switch.servers[].address")


def devices_for(switch: SwitchConfig, role: str) -> list[Device]:
    """The devices ROLE needs, bridges first."""
    if role == "hub":
        hub = f"{switch.device_prefix}hub"
        return [Device(hub, "bridge")] + [
            Device(f"{switch.device_prefix}{s.name}", "vxlan", switch.vni_base + i, s.address, switch.hub, hub)
            for i, s in enumerate(switch.servers)
        ]
    for i, server in enumerate(switch.servers):
        if server.name == role:
            return [
                Device(switch.bridge, "bridge"),
                Device(
                    f"{switch.device_prefix}0", "vxlan", switch.vni_base + i, switch.hub, server.address, switch.bridge
                ),
            ]
    raise InputError(f"switch: no server named {role!r}")


def plan_up(switch: SwitchConfig, role: str, existing: set[str]) -> list[list[str]]:
    """ip(8) commands that create what is missing; an existing device is left as it is (idempotent)."""
    commands: list[list[str]] = []
    for d in devices_for(switch, role):
        if d.name in existing:
            continue
        if d.kind == "bridge":
            commands.append(["ip", "link", "add", d.name, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        else:
            commands.append(
                [
                    "ip",
                    "link",
                    "add",
                    d.name,
                    "type",
                    "vxlan",
                    "id",
                    str(d.vni),
                    "remote",
                    str(d.remote),
                    "local",
                    str(d.local),
                    "dstport",
                    VXLAN_PORT,
                    "dev",
                    switch.underlay_interface,
                ]
            )
            commands.append(["ip", "link", "set", d.name, "master", str(d.master)])
        commands.append(["ip", "link", "set", d.name, "mtu", str(switch.mtu), "up"])
    return commands


def plan_down(switch: SwitchConfig, role: str, existing: set[str]) -> list[list[str]]:
    """Remove the VXLANs, and the hub's bridge (a server's cluster bridge stays: nodes may use it)."""
    out = []
    for d in reversed(devices_for(switch, role)):
        if d.name in existing and (d.kind == "vxlan" or role == "hub"):
            out.append(["ip", "link", "del", d.name])
    return out


def parse_links(ip_json: str) -> dict[str, dict]:
    """`ip -j -d -s link show` output by device name."""
    return {link["ifname"]: link for link in json.loads(ip_json or "[]")}


def local_addresses(netns: str | None = None) -> set[IPv4Address]:
    out = runner.run(["ip", "-j", "-4", "addr", "show"], via=runner.in_netns(netns)).stdout
    return {IPv4Address(a["local"]) for link in json.loads(out) for a in link.get("addr_info", [])}


def links(netns: str | None = None) -> dict[str, dict]:
    return parse_links(runner.run(["ip", "-j", "-d", "-s", "link", "show"], via=runner.in_netns(netns)).stdout)


Planner = Callable[[SwitchConfig, str, set[str]], list[list[str]]]


def plan(switch: SwitchConfig, planner: Planner, netns: str | None = None) -> tuple[str, list[list[str]]]:
    """This host's role and the commands PLANNER (plan_up or plan_down) gives against its devices; reads only."""
    role = role_of(switch, local_addresses(netns))
    return role, planner(switch, role, set(links(netns)))


def apply(switch: SwitchConfig, planner: Planner, netns: str | None = None) -> tuple[str, list[list[str]]]:
    """Plan this host's part with PLANNER, then run it."""
    role, commands = plan(switch, planner, netns)
    for argv in commands:
        runner.run(argv, via=runner.in_netns(netns))
    return role, commands


def status(switch: SwitchConfig, netns: str | None = None) -> list[dict]:
    """One row per device of this host's role: state, VNI, remote and packet counters."""
    role = role_of(switch, local_addresses(netns))
    have = links(netns)
    rows = []
    for d in devices_for(switch, role):
        link = have.get(d.name)
        stats = (link or {}).get("stats64", {})
        rows.append(
            {
                "role": role,
                "device": d.name,
                "kind": d.kind,
                "vni": d.vni or "",
                "remote": d.remote or "",
                "state": (link or {}).get("operstate", "absent").lower(),
                "rx_packets": stats.get("rx", {}).get("packets", ""),
                "tx_packets": stats.get("tx", {}).get("packets", ""),
            }
        )
    return rows
