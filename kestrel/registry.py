"""Nodes: the registry file (a dnsmasq dhcp-hostsfile), its parser and its writer."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address

from kestrel import names
from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

REGISTRY_PATH = "/etc/kestrel/nodes"
REGISTRY_HEADER = (
    "# Kestrel node registry, also dnsmasq's dhcp-hostsfile (re-read on SIGHUP).\n"
    "# MAC,set:img-IMAGE,set:grp-GROUP,IP,NAME - edit with kestrel-nodes, or by hand and reconfigure.\n"
)


@dataclass(frozen=True, order=True)
class Node:
    name: str
    mac: str
    ip: IPv4Address
    image: str
    group: str

    def hostsfile_line(self) -> str:
        return f"{self.mac},set:img-{self.image},set:grp-{self.group},{self.ip},{self.name}"


def parse_registry(text: str, where: str = REGISTRY_PATH) -> list[Node]:
    """Parse registry TEXT; a bad line is an InputError naming WHERE:LINE (the registry is Kestrel's own)."""
    nodes: list[Node] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            nodes.append(parse_registry_line(line))
        except ValueError as e:
            raise InputError(f"{where}:{number}: {e}") from None
    return nodes


def parse_registry_line(line: str) -> Node:
    fields = line.split(",")
    image = group = None
    rest: list[str] = []
    for f in fields[1:]:
        if f.startswith("set:img-"):
            image = f[len("set:img-"):]
        elif f.startswith("set:grp-"):
            group = f[len("set:grp-"):]
        else:
            rest.append(f)
    if len(rest) != 2 or image is None or group is None:
        raise ValueError(f"expected MAC,set:img-IMAGE,set:grp-GROUP,IP,NAME, got {line!r}")
    try:
        ip = IPv4Address(rest[0])
    except AddressValueError:
        raise ValueError(f"{rest[0]!r} is not an IPv4 address") from None
    return Node(
        name=names.check_hostname(rest[1]),
        mac=names.normalize_mac(fields[0]),
        ip=ip,
        image=names.check_name(image, "image name"),
        group=names.check_name(group, "group name"),
    )


def format_registry(nodes: list[Node]) -> str:
    return REGISTRY_HEADER + "".join(n.hostsfile_line() + "\n" for n in sorted(nodes, key=_natural))


def _natural(node: Node) -> tuple[str, int, str]:
    """node2 before node10."""
    stem = node.name.rstrip("0123456789")
    digits = node.name[len(stem):]
    return (stem, int(digits) if digits else -1, node.name)


def load_registry(root: Sysroot) -> list[Node]:
    data = root.read(REGISTRY_PATH)
    return parse_registry(data.decode("utf-8", "replace"), root.sys(REGISTRY_PATH)) if data else []
