"""Nodes: the registry file (a dnsmasq dhcp-hostsfile), its parser and its writer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from ipaddress import AddressValueError, IPv4Address
from typing import TypeVar

from kestrel import names
from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.nodes import hostlist
from kestrel.nodes.leases import Lease
from kestrel.sysroot import Sysroot, content_lines

REGISTRY_PATH = "/etc/kestrel/nodes"
K = TypeVar("K")
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
    for number, line in content_lines(text):
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
            image = f[len("set:img-") :]
        elif f.startswith("set:grp-"):
            group = f[len("set:grp-") :]
        else:
            rest.append(f)
    if len(rest) != 2 or image is None or group is None:
        raise ValueError(f"expected MAC,set:img-IMAGE,set:grp-GROUP,IP,NAME, got {line!r}")
    try:
        ip = IPv4Address(rest[0])
    except AddressValueError:
        raise ValueError(f"{rest[0]!r} is not an IPv4 address") from None
    return Node(
        name=names.check_node_name(rest[1]),
        mac=names.normalize_mac(fields[0]),
        ip=ip,
        image=names.check_name(image, "image name"),
        group=names.check_group_name(group),
    )


def format_registry(nodes: list[Node]) -> str:
    return REGISTRY_HEADER + "".join(n.hostsfile_line() + "\n" for n in sorted(nodes, key=natural_key))


def natural_key(node: Node) -> tuple[str, int, str]:
    """node2 before node10."""
    stem = node.name.rstrip("0123456789")
    digits = node.name[len(stem) :]
    return (stem, int(digits) if digits else -1, node.name)


def load_registry(root: Sysroot) -> list[Node]:
    data = root.read(REGISTRY_PATH)
    if not data:
        return []
    where = root.sys(REGISTRY_PATH)
    nodes = parse_registry(data.decode("utf-8", "replace"), where)
    check_unique(nodes, where)
    return nodes


# -- changes: pure functions from a node list to a new node list; InputError names what is wrong ----------


def add_node(
    nodes: list[Node],
    config: Config,
    *,
    mac: str,
    name: str | None = None,
    ip: str | IPv4Address | None = None,
    image: str | None = None,
    group: str | None = None,
) -> list[Node]:
    """NODES plus one node; a missing name or address is allocated (pattern, static pool, free address)."""
    book = _Book(nodes, config)
    return [*nodes, book.new_node(mac, name, ip, image, group)]


def set_node(
    nodes: list[Node],
    config: Config,
    name: str,
    *,
    image: str | None = None,
    group: str | None = None,
    ip: str | IPv4Address | None = None,
    new_name: str | None = None,
) -> list[Node]:
    """NODES with node NAME changed; an unchanged value is not checked again."""
    node = find_node(nodes, name)
    others = [n for n in nodes if n is not node]
    book = _Book(others, config)
    changed = replace(
        node,
        name=node.name if new_name in (None, node.name) else book.check_name(new_name),
        ip=node.ip if ip is None or names.parse_ip(ip) == node.ip else book.check_ip(names.parse_ip(ip), leased=None),
        image=node.image if image is None else names.parse_label(image, "image name"),
        group=node.group if group is None else names.parse_node_name(group, "group name"),
    )
    return [*others, changed]


def set_nodes(
    nodes: list[Node],
    config: Config,
    words: Iterable[str],
    *,
    ip: str | None = None,
    new_name: str | None = None,
    **fields: str | None,
) -> list[Node]:
    """NODES with those WORDS name (select_nodes) changed: image and group for any number, address and name for
    one node only."""
    chosen = select_nodes(nodes, words)
    if len(chosen) != 1 and (ip is not None or new_name is not None):
        raise InputError(f"--ip and --name change one node: name one, not {len(chosen)}")
    for n in chosen:
        nodes = set_node(nodes, config, n.name, ip=ip, new_name=new_name, **fields)
    return nodes


def register_leases(
    nodes: list[Node], config: Config, leases: Iterable[Lease], *, image: str | None = None, group: str | None = None
) -> tuple[list[Node], list[Node], list[str]]:
    """Register every leased MAC not yet known: (all nodes, the new ones, a warning per lease refused).

    Known MACs keep their entries, so registering twice changes nothing.
    """
    book = _Book(nodes, config)
    image = names.parse_label(config.nodes.default_image if image is None else image, "image name")
    group = names.parse_node_name(config.nodes.default_group if group is None else group, "group name")
    added: list[Node] = []
    warnings: list[str] = []
    for lease in leases:
        if lease.mac in book.by_mac:
            continue
        try:
            added.append(book.new_node(lease.mac, None, None, image, group, leased=lease.ip))
        except InputError as e:
            warnings.append(f"lease of {lease.mac} ({lease.ip}): {e}; not registered")
    return [*nodes, *added], added, warnings


def select_nodes(nodes: list[Node], words: Iterable[str], group: str | None = None) -> list[Node]:
    """The nodes WORDS name, each word a name, a host list (node[01-04,07]) or @GROUP as clush reads them; or
    those of GROUP (--group); or every node when neither is given. In the order named, each once. An unknown
    name or group is an InputError: every command that takes node names resolves them here."""
    words = list(words)
    if words and group:
        raise InputError("give node names or --group, not both")
    if group is not None:
        words = [f"@{names.parse_node_name(group, 'group name')}"]
    if not words:
        return list(nodes)
    groups: dict[str, list[str]] = {}
    for n in nodes:
        groups.setdefault(n.group, []).append(n.name)
    by_name = {n.name: n for n in nodes}
    wanted = list(dict.fromkeys(name for word in words for name in hostlist.expand(word, groups)))
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise InputError(f"no node named {', '.join(map(repr, unknown))} (see kestrel-nodes list)")
    return [by_name[name] for name in wanted]


def remove_nodes(nodes: list[Node], words: Iterable[str]) -> list[Node]:
    """NODES without those WORDS name (select_nodes); naming none is an InputError."""
    words = list(words)
    if not words:
        raise InputError("name the nodes to remove")
    gone = set(select_nodes(nodes, words))
    return [n for n in nodes if n not in gone]


def find_node(nodes: list[Node], name: str) -> Node:
    for n in nodes:
        if n.name == name:
            return n
    raise InputError(f"no node named {name!r} (see kestrel-nodes list)")


def check_unique(nodes: list[Node], where: str = REGISTRY_PATH) -> None:
    """A hand-edited registry may repeat a name, a MAC or an address: refuse it before anything else."""
    _Book(nodes, None, where)


class _Book:
    """Names, MACs and addresses in use, and the allocators for new ones; one pass, so 10,000 leases are fast."""

    def __init__(self, nodes: list[Node], config: Config | None, where: str = REGISTRY_PATH) -> None:
        self.config = config
        self.by_name: dict[str, Node] = {}
        self.by_mac: dict[str, Node] = {}
        self.by_ip: dict[IPv4Address, Node] = {}
        for n in nodes:
            _record(self.by_name, n.name, n, "name", where)
            _record(self.by_mac, n.mac, n, "MAC", where)
            _record(self.by_ip, n.ip, n, "address", where)
        self._names: Iterator[str] | None = None
        self._ips: Iterator[IPv4Address] | None = None

    @property
    def cfg(self) -> Config:
        assert self.config is not None
        return self.config

    def new_node(
        self,
        mac: str,
        name: str | None,
        ip: str | IPv4Address | None,
        image: str | None,
        group: str | None,
        leased: IPv4Address | None = None,
    ) -> Node:
        mac = names.parse_mac(mac)
        if mac in self.by_mac:
            raise InputError(f"MAC {mac} is registered already, as {self.by_mac[mac].name}")
        if name is not None:
            name = self.check_name(name)
        if ip is not None:
            address = self.check_ip(names.parse_ip(ip), leased)
        elif self.cfg.network.static_pool is None and leased is not None:
            address = self.check_ip(leased, leased)
        else:
            address = self.free_ip()
        node = Node(
            name=name if name is not None else self.free_name(),
            mac=mac,
            ip=address,
            image=names.parse_label(self.cfg.nodes.default_image if image is None else image, "image name"),
            group=names.parse_node_name(self.cfg.nodes.default_group if group is None else group, "group name"),
        )
        self.by_name[node.name] = self.by_mac[mac] = self.by_ip[address] = node
        return node

    def check_name(self, name: str) -> str:
        names.parse_node_name(name)
        if name in self.by_name:
            raise InputError(f"name {name!r} is taken, by {self.by_name[name].mac}")
        if name == self.cfg.cluster.frontend_name:
            raise InputError(f"name {name!r} is the frontend's name (cluster.frontend_name)")
        return name

    def check_ip(self, ip: IPv4Address, leased: IPv4Address | None) -> IPv4Address:
        """Inside the network, not the frontend's, outside the dynamic range unless leased, unique."""
        net = self.cfg.network
        if ip not in net.network or ip in (net.network.network_address, net.network.broadcast_address):
            raise InputError(f"{ip} is not a host address of the cluster network {net.network}")
        if ip == net.ip:
            raise InputError(f"{ip} is the frontend's address")
        start, end = net.dhcp_range
        if start <= ip <= end and ip != leased:
            raise InputError(
                f"{ip} is inside the dynamic range {start}-{end}, which only leased addresses "
                "may keep; pick one outside it"
            )
        if ip in self.by_ip:
            raise InputError(f"{ip} is taken, by {self.by_ip[ip].name}")
        return ip

    def free_name(self) -> str:
        if self._names is None:
            self._names = _candidates_names(self.cfg)
        for name in self._names:
            if name not in self.by_name and name != self.cfg.cluster.frontend_name:
                return name
        raise AssertionError("unreachable: the name pattern is endless")

    def free_ip(self) -> IPv4Address:
        if self._ips is None:
            self._ips = _candidate_ips(self.cfg)
        for ip in self._ips:
            if ip not in self.by_ip:
                return ip
        pool = self.cfg.network.static_pool
        where = (
            f"the static pool {pool[0]}-{pool[1]}" if pool else f"{self.cfg.network.network} outside the dynamic range"
        )
        raise InputError(f"no free address left in {where}")


def _record(index: dict[K, Node], key: K, node: Node, what: str, where: str) -> None:
    if key in index:
        raise InputError(
            f"{where}: {what} {key} appears twice ({index[key].name} and {node.name}); fix the file by hand"
        )
    index[key] = node


def _candidates_names(config: Config) -> Iterator[str]:
    index = config.nodes.first_index
    while True:
        yield config.nodes.name_pattern.format(index=index)
        index += 1


def _candidate_ips(config: Config) -> Iterator[IPv4Address]:
    """The static pool if there is one, else every host address outside the dynamic range."""
    net = config.network
    if net.static_pool is not None:
        start, end = net.static_pool
        for value in range(int(start), int(end) + 1):
            yield IPv4Address(value)
        return
    low, high = net.dhcp_range
    for ip in net.network.hosts():
        if ip != net.ip and not low <= ip <= high:
            yield ip
