"""Node operations: every registry or state change is locked, planned (registry, state, hosts, hostfiles), applied."""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path

from kestrel import accounts, frontend, images, knownhosts, leases, nodestate, registry, remote, services
from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.nodestate import Facts, States
from kestrel.registry import Node
from kestrel.sysroot import Action, Desired, Plan, Sysroot, apply_changes, plan_files

Say = Callable[[str], None]
Change = Callable[[list[Node], States], tuple[list[Node], States]]
_VISITORS = 16


def plan_nodes(root: Sysroot, config: Config, nodes: list[Node], states: States) -> Plan:
    """The files that follow from the nodes: registry, state, both hosts files, hostfiles, per-MAC boot menus."""
    published = [i for i in images.published_images(root) if i.bootable]
    desired = [
        Desired(registry.REGISTRY_PATH, registry.format_registry(nodes).encode(),
                on_change=("dnsmasq", Action.RELOAD)),
        Desired(nodestate.STATE_PATH, nodestate.format_states(states)),
    ]
    desired += frontend.node_files(root, config, nodes, published, states)
    return plan_files(root, desired, owned=frontend.NODE_OWNED)


def change_nodes(root: Sysroot, config: Config, config_path: Path, change: Change, say: Say = print) -> Plan:
    """The one way nodes change: under the lock, CHANGE the registry and state, write what differs, reload dnsmasq.

    Each file is replaced atomically, so a crash leaves every file old or new; the next change converges.
    """
    with root.lock():
        nodes, states = change(registry.load_registry(root), nodestate.load_states(root))
        states = nodestate.keep_only(states, {n.mac for n in nodes})
        plan = plan_nodes(root, config, nodes, states)
        apply_changes(root, plan, say)
        services.perform(root, plan.actions, say)
        return plan


def _nodes_only(fn: Callable[[list[Node]], list[Node]]) -> Change:
    return lambda nodes, states: (fn(nodes), states)


def add(root: Sysroot, config: Config, config_path: Path, mac: str, say: Say = print, **fields: str | None) -> Node:
    """kestrel-nodes add: one node by hand (name, ip, image, group); name and address allocated if absent."""
    made: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        nodes = registry.add_node(nodes, config, mac=mac, **fields)
        made.append(nodes[-1])
        return nodes, states

    change_nodes(root, config, config_path, change, say)
    return made[0]


def remove(root: Sysroot, config: Config, config_path: Path, name: str, say: Say = print) -> None:
    change_nodes(root, config, config_path, _nodes_only(lambda nodes: registry.remove_node(nodes, name)), say)


def set_fields(root: Sysroot, config: Config, config_path: Path, name: str, say: Say = print,
               **fields: str | None) -> None:
    change_nodes(root, config, config_path,
                 _nodes_only(lambda nodes: registry.set_node(nodes, config, name, **fields)), say)


def mark_states(root: Sysroot, config: Config, config_path: Path, updates: dict[str, tuple[bool, Facts | None]],
                say: Say = print, now: int | None = None) -> None:
    """Record that the named nodes are up (with facts, if learned) or down; hostfiles follow. For check/exec."""
    stamp = int(time.time()) if now is None else now

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        for name, (up, facts) in updates.items():
            states = nodestate.mark(states, registry.find_node(nodes, name).mac, up, stamp, facts)
        return nodes, states

    change_nodes(root, config, config_path, change, say)


def mark_state(root: Sysroot, config: Config, config_path: Path, name: str, up: bool, facts: Facts | None = None,
               say: Say = print) -> None:
    mark_states(root, config, config_path, {name: (up, facts)}, say)


# -- registration from leases -------------------------------------------------------------------------------

def register(
    root: Sysroot, config: Config, config_path: Path, *, leases_file: Path | None = None, image: str | None = None,
    group: str | None = None, verify: bool = True, say: Say = print,
) -> list[Node]:
    """kestrel-nodes --register: every leased MAC not yet registered (that answers SSH, if VERIFY) becomes a node."""
    image = registry.parse_label(image or config.nodes.default_image, "image name")
    group = registry.parse_label(group or config.nodes.default_group, "group name")
    path = leases_file or root.path(config.network.leases_file)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise InputError(f"{path}: no leases file (is dnsmasq running? or pass --leases FILE)") from None
    found, warnings = leases.parse_leases(text, str(path))
    for w in warnings:
        say(f"Warning: {w}")
    known = {n.mac for n in registry.load_registry(root)}
    fresh = [lease for lease in leases.latest_by_mac(found) if lease.mac not in known]
    if not fresh:
        return []
    facts: dict[str, Facts] = {}
    if verify:
        facts = visit(root, config, fresh, say)
        fresh = [lease for lease in fresh if lease.mac in facts]
    added: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        nodes, new, refused = registry.register_leases(nodes, config, fresh, image=image, group=group)
        for w in refused:
            say(f"Warning: {w}")
        stamp = int(time.time())
        for n in new:
            if n.mac in facts:
                states = nodestate.mark(states, n.mac, True, stamp, facts[n.mac])
        added.extend(new)
        return nodes, states

    change_nodes(root, config, config_path, change, say)
    for n in added:
        say(f"Registered {n.name} ({n.mac}, {n.ip})")
    return added


def visit(root: Sysroot, config: Config, found: list[leases.Lease], say: Say) -> dict[str, Facts]:
    """SSH into each leased address with the frontend's key, in parallel: the facts of those that answer.

    A node must show a host key of one of the images (or one in Kestrel's known_hosts): a machine that
    merely answers SSH on the cluster network is not trusted.
    """
    by_target = {remote.Target(str(lease.ip), str(lease.ip), config.nodes.ssh_port): lease for lease in found}
    timeout = float(config.nodes.ssh_timeout)
    images_keys = knownhosts.parse(accounts.known_hosts_body(root, config))
    with remote.root_pool(root, config.nodes.ssh_key, timeout, config.network.netns, trusted=images_keys) as pool:
        results = remote.fan_out(list(by_target), lambda t: remote.run(pool, t, nodestate.FACTS_COMMAND, timeout),
                                 _VISITORS)
    out: dict[str, Facts] = {}
    for result in results:
        lease = by_target[result.target]
        why = result.why()
        if result.ok:
            try:
                out[lease.mac] = nodestate.parse_facts(result.stdout)
                continue
            except ValueError as e:
                why = str(e)
        say(f"Skipped {lease.mac} ({lease.ip}): {why}; not registered (--no-verify registers it anyway)")
    return out


# -- dnsmasq's dhcp-script: lease events -------------------------------------------------------------------

def lease_event(root: Sysroot, config: Config, config_path: Path, action: str, mac: str, ip: str,
                say: Say = print) -> Node | None:
    """add: the node is up (a new MAC is registered if nodes.auto_register); del: down; old: only registers.

    dnsmasq runs its script serially and sends `old` for every lease when it starts, so a known MAC with
    `old` returns before taking the lock.
    """
    mac = registry.parse_mac(mac)
    try:
        address = IPv4Address(ip)
    except AddressValueError:
        raise InputError(f"{ip!r} is not an IPv4 address") from None
    if action not in ("add", "old", "del"):
        raise InputError(f"lease event {action!r} is not add, old or del")
    known = {n.mac: n for n in registry.load_registry(root)}
    if action == "old" and mac in known:
        return known[mac]
    if mac not in known and (action == "del" or not config.nodes.auto_register):
        return None
    result: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        node = next((n for n in nodes if n.mac == mac), None)
        if node is None:
            lease = leases.Lease(0, mac, address, None, None)
            nodes, new, refused = registry.register_leases(nodes, config, [lease])
            if refused:
                raise InputError(refused[0])
            node = new[0]
            say(f"Registered {node.name} ({node.mac}, {node.ip})")
        if action == "add":
            states = nodestate.mark(states, mac, True, int(time.time()))
        elif action == "del" and node.ip == address:
            # A node moved from its dynamic lease to its static address gets `del` for the old lease.
            states = nodestate.mark(states, mac, False, int(time.time()))
        result.append(node)
        return nodes, states

    change_nodes(root, config, config_path, change, say)
    return result[0] if result else None
