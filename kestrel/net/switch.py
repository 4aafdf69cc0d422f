"""The VXLAN switch: one switch host bridges the cluster networks of several servers, so every frame between
nodes on different servers crosses it.

The switch host has one unicast VXLAN per server, each with its own VNI, all in one hub bridge (a bridge never
sends a frame back out of the port it came in on: split horizon for free; one VXLAN with several remotes would
reflect broadcasts, see shared notes). Each server has one VXLAN to the switch host in its cluster bridge. When the
switch host also hosts nodes, its cluster bridge joins the hub through a veth pair. Every VXLAN endpoint accepts
the VXLAN UDP port only from its configured peers (nftables).

This module is pure: what each host gets (devices, VNIs, MTU, nft rules) and the commands that get it there from
what the host has; kestrel.nodes.switchhosts runs them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv6Address

from kestrel.config import MTU_AUTO, Config, Server, SwitchConfig
from kestrel.errors import InputError

IPV4_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
IPV6_OVERHEAD = 70  # outer IPv6 is 40 bytes
NFT_TABLE = "kestrel_switch"
MANIFEST = "/run/kestrel/switch.json"  # in /run: gone at a reboot, like the devices it lists

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # bridge | vxlan | veth
    vni: int | None = None
    remote: Address | None = None
    local: Address | None = None
    master: str | None = None
    underlay: str | None = None
    peer: str | None = None  # veth: the other end (created with it, in the same host)
    peer_master: str | None = None


@dataclass(frozen=True)
class HostPlan:
    """What one server gets: its devices (bridges first) and the peers its VXLAN port accepts."""

    server: Server
    devices: list[Device]
    peers: list[Address]
    port: int


@dataclass
class Manifest:
    """What `up` made on a host, so `down` removes exactly that (devices that existed before are not listed)."""

    devices: list[str] = field(default_factory=list)
    nft_table: str | None = None
    ruleset: str = ""
    mtu: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @staticmethod
    def parse(text: str) -> Manifest:
        if not text.strip():
            return Manifest()
        try:
            data = json.loads(text)
            return Manifest(list(data["devices"]), data.get("nft_table"), data.get("ruleset", ""), data.get("mtu"))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{MANIFEST}: not a switch manifest ({e}); remove it and the devices by hand") from None


def overhead(addresses: Iterable[Address]) -> int:
    return IPV6_OVERHEAD if any(a.version == 6 for a in addresses) else IPV4_OVERHEAD


def overlay_mtu(switch: SwitchConfig, underlay_mtus: Mapping[str, int], addresses: Iterable[Address]) -> int:
    """The cluster network's MTU: the smallest underlay MTU minus the VXLAN overhead, or the configured number
    if it fits under that."""
    name, smallest = min(underlay_mtus.items(), key=lambda kv: (kv[1], kv[0]))
    most = smallest - overhead(addresses)
    if switch.mtu == MTU_AUTO:
        return most
    if int(switch.mtu) > most:
        raise InputError(
            f"switch.mtu: {switch.mtu} does not fit: {name}'s underlay MTU {smallest} leaves {most} after VXLAN"
        )
    return int(switch.mtu)


def _names(switch: SwitchConfig) -> tuple[str, str, str, str]:
    p = switch.device_prefix
    # '-' cannot start a server name: these never clash with the hub's per-server {p}{name}
    return f"{p}-hub", f"{p}-up", f"{p}-lh", f"{p}-ls"


def plan_hosts(config: Config) -> list[HostPlan]:
    """Every server's plan: the switch host's hub (and its own cluster bridge when it hosts nodes), and on each
    other server its cluster bridge with one VXLAN to the switch host."""
    switch = config.switch
    if switch is None:
        raise InputError("switch: no 'switch:' section; see etc-kestrel/kestrel.yaml")
    hub_name, up_name, veth_hub, veth_server = _names(switch)
    hub = next(s for s in config.servers if s.name == switch.server)
    others = [s for s in config.servers if s is not hub]
    plans = []
    for server in config.servers:
        if server is hub:
            devices = [Device(hub_name, "bridge")]
            for i, other in enumerate(others):
                devices.append(
                    Device(
                        f"{switch.device_prefix}{other.name}",
                        "vxlan",
                        switch.vni_base + i,
                        other.address,
                        hub.address,
                        hub_name,
                        hub.underlay_interface,
                    )
                )
            if hub.nodes:
                devices.insert(1, Device(switch.bridge, "bridge"))
                devices.append(Device(veth_hub, "veth", master=hub_name, peer=veth_server, peer_master=switch.bridge))
            plans.append(HostPlan(server, devices, [o.address for o in others], switch.port))
        else:
            vni = switch.vni_base + others.index(server)
            devices = [
                Device(switch.bridge, "bridge"),
                Device(up_name, "vxlan", vni, hub.address, server.address, switch.bridge, server.underlay_interface),
            ]
            plans.append(HostPlan(server, devices, [hub.address], switch.port))
    return plans


def create_argv(d: Device, port: int) -> list[str]:
    if d.kind == "bridge":
        return ["ip", "link", "add", d.name, "type", "bridge", "stp_state", "0", "forward_delay", "0"]
    if d.kind == "veth":
        return ["ip", "link", "add", d.name, "type", "veth", "peer", "name", str(d.peer)]
    return [
        "ip", "link", "add", d.name, "type", "vxlan", "id", str(d.vni), "remote", str(d.remote),
        "local", str(d.local), "dstport", str(port), "dev", str(d.underlay),
    ]  # fmt: skip


def _ends(d: Device) -> list[tuple[str, str | None]]:
    """The interfaces a device has on the host, each with the bridge it belongs in."""
    return [(d.name, d.master)] + ([(str(d.peer), d.peer_master)] if d.kind == "veth" else [])


def plan_up(plan: HostPlan, mtu: int, links: Mapping[str, Mapping]) -> list[list[str]]:
    """ip(8) commands that bring PLAN's devices from LINKS (`ip -j -d link show` by name) to where they should be:
    missing ones created; MTU, bridge and state set where they differ; nothing when all is in place."""
    out: list[list[str]] = []
    for d in plan.devices:
        have = links.get(d.name)
        if have is None:
            out.append(create_argv(d, plan.port))
        for name, master in _ends(d):
            now = links.get(name) if have is not None else None
            if master and (now is None or now.get("master") != master):
                out.append(["ip", "link", "set", name, "master", master])
            if now is None or now.get("mtu") != mtu or "UP" not in now.get("flags", []):
                out.append(["ip", "link", "set", name, "mtu", str(mtu), "up"])
    return out


def plan_down(manifest: Manifest, links: Mapping[str, Mapping]) -> list[list[str]]:
    """Delete what the manifest lists and the host still has, last made first (a veth goes with its peer)."""
    return [["ip", "link", "del", name] for name in reversed(manifest.devices) if name in links]


def created(plan: HostPlan, links: Mapping[str, Mapping]) -> list[str]:
    """The devices of PLAN that `up` creates (not there before)."""
    return [d.name for d in plan.devices if d.name not in links]


def nft_ruleset(plan: HostPlan) -> str:
    """The host's VXLAN port open to its peers only: anything else sent to it is counted and dropped."""
    lines = [f"table inet {NFT_TABLE} {{", "  counter dropped {}"]
    for version, kind in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        peers = sorted(str(a) for a in plan.peers if a.version == version)
        if peers:
            lines += [f"  set peers{version} {{", f"    type {kind}", f"    elements = {{ {', '.join(peers)} }}", "  }"]
    lines += ["  chain input {", "    type filter hook input priority filter; policy accept;"]
    for version, match in ((4, "ip"), (6, "ip6")):
        if any(a.version == version for a in plan.peers):
            lines.append(f"    udp dport {plan.port} {match} saddr @peers{version} accept")
    lines += [f'    udp dport {plan.port} counter name "dropped" drop', "  }", "}"]
    return "\n".join(lines) + "\n"


def nft_up_input(ruleset: str) -> str:
    """`nft -f -` input that replaces the table in one transaction (made if missing, emptied, filled)."""
    return f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{ruleset}"


def batch(commands: Iterable[list[str]]) -> str:
    """`ip -batch -` input for ip(8) COMMANDS (each line one argument list, quoted)."""
    return "".join(shlex.join(argv[1:]) + "\n" for argv in commands)


def links_by_name(ip_json: str) -> dict[str, dict]:
    """`ip -j -d -s link show` output by device name."""
    return {link["ifname"]: link for link in json.loads(ip_json or "[]")}


def status_rows(plan: HostPlan, links: Mapping[str, Mapping], dropped: int | None, error: str = "") -> list[dict]:
    """One row per device of PLAN: state, VNI, remote, MTU and counters (absent: not there; unreachable: the
    host could not be read, ERROR says why)."""
    rows = []
    for d in plan.devices:
        link = links.get(d.name) or {}
        stats = link.get("stats64", {})
        rows.append(
            {
                "server": plan.server.name,
                "device": d.name,
                "kind": d.kind,
                "vni": d.vni,
                "remote": str(d.remote) if d.remote else None,
                "state": "unreachable" if error else link.get("operstate", "absent").lower(),
                "mtu": link.get("mtu"),
                "rx_packets": stats.get("rx", {}).get("packets"),
                "tx_packets": stats.get("tx", {}).get("packets"),
                "rx_bytes": stats.get("rx", {}).get("bytes"),
                "tx_bytes": stats.get("tx", {}).get("bytes"),
                "dropped": None if d.kind != "vxlan" else dropped,
                "error": error,
            }
        )
    return rows


# Several commands in one SSH exec (each exec costs a session and the remote login shell's start-up): a POSIX sh
# script of the argument lists, each word quoted, a step's input as a quoted here-document, a marker line with
# its exit status after each step's output.
_MARK = "--kestrel-step-ended"
_EOF = "KESTREL_STEP_INPUT_END"


@dataclass(frozen=True)
class Step:
    argv: list[str]
    input: str | None = None


def steps_script(steps: Iterable[Step], stop_on_error: bool) -> str:
    out = []
    for step in steps:
        command = shlex.join(step.argv)
        if step.input is not None:
            if _EOF in step.input:
                raise InputError(f"internal: a step's input holds {_EOF}")
            text = step.input if step.input.endswith("\n") else step.input + "\n"
            command += f" <<'{_EOF}'\n{text}{_EOF}"
        out.append(
            f'{command}\nrc=$?; printf "\\n{_MARK} %s\\n" "$rc"'
            + ('; [ "$rc" = 0 ] || exit "$rc"' if stop_on_error else "")
        )
    return "\n".join(out) + "\n"


def parse_steps(stdout: str) -> list[tuple[int, str]]:
    """(exit status, output) of each step that ran, in order."""
    found = []
    rest = stdout
    marker = f"\n{_MARK} "
    while marker in rest:
        text, _, rest = rest.partition(marker)
        rc, _, rest = rest.partition("\n")
        found.append((int(rc), text))
    return found
