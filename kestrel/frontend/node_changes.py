"""Every change of the registry or node state: locked, planned (registry, state, hosts, hostfiles), applied."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from kestrel.config import Config
from kestrel.frontend import desired, firewall, services
from kestrel.images import store
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.nodes.registry import Node
from kestrel.nodes.state import Facts, States
from kestrel.plan import Action, Desired, Plan, plan_files
from kestrel.sysroot import Sysroot

Change = Callable[[list[Node], States], tuple[list[Node], States]]


def plan_nodes(root: Sysroot, config: Config, nodes: list[Node], states: States) -> Plan:
    """The files that follow from the nodes: registry, state, both hosts files, hostfiles, per-MAC boot menus, and
    the firewall's node set loaded where it lives (one nft transaction: a new node may mount at once, a removed
    one no longer)."""
    published = [i for i in store.published_images(root) if i.bootable]
    wanted = [
        Desired(registry.REGISTRY_PATH, registry.format_registry(nodes).encode(), on_change=("dnsmasq", Action.RELOAD)),
        Desired(nodestate.STATE_PATH, nodestate.format_states(states)),
    ]
    wanted += desired.node_files(root, config, nodes, published, states)
    plan = plan_files(root, wanted, owned=desired.NODE_OWNED)
    if step := firewall.load_step(root, config, nodes):
        plan.add(step)  # the firewall's node set, once its file is written
    return plan


def change_nodes(root: Sysroot, config: Config, change: Change, *, dry_run: bool = False) -> Plan:
    """The one way nodes change: under the lock, CHANGE the registry and state, write what differs, reload dnsmasq.

    Each file is replaced atomically, so a crash leaves every file old or new; the next change converges.
    DRY_RUN: only plan (describe_plan says what it would do).
    """
    with contextlib.nullcontext() if dry_run else root.lock():  # a dry run writes nothing, not even the lock
        nodes, states = change(registry.load_registry(root), nodestate.load_states(root))
        states = nodestate.keep_only(states, {n.mac for n in nodes})
        plan = plan_nodes(root, config, nodes, states)
        if not dry_run:
            services.apply(root, plan)
        return plan


def _nodes_only(fn: Callable[[list[Node]], list[Node]]) -> Change:
    return lambda nodes, states: (fn(nodes), states)


def add(root: Sysroot, config: Config, mac: str, *, dry_run: bool = False, **fields: str | None) -> tuple[Node, Plan]:
    """kestrel-nodes add: one node by hand (name, ip, image, group); name and address allocated if absent."""
    made: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        nodes = registry.add_node(nodes, config, mac=mac, **fields)
        made.append(nodes[-1])
        return nodes, states

    plan = change_nodes(root, config, change, dry_run=dry_run)
    return made[0], plan


def remove(root: Sysroot, config: Config, name: str, *, dry_run: bool = False) -> Plan:
    return change_nodes(root, config, _nodes_only(lambda nodes: registry.remove_node(nodes, name)), dry_run=dry_run)


def set_fields(root: Sysroot, config: Config, name: str, *, dry_run: bool = False, **fields: str | None) -> Plan:
    return change_nodes(
        root, config, _nodes_only(lambda nodes: registry.set_node(nodes, config, name, **fields)), dry_run=dry_run
    )


def mark_states(
    root: Sysroot, config: Config, updates: dict[str, tuple[bool, Facts | None]], now: int | None = None
) -> None:
    """Record that the named nodes are up (with facts, if learned) or down; hostfiles follow. For check/exec."""
    stamp = int(time.time()) if now is None else now

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        for name, (up, facts) in updates.items():
            states = nodestate.mark(states, registry.find_node(nodes, name).mac, up, stamp, facts)
        return nodes, states

    change_nodes(root, config, change)


def mark_state(root: Sysroot, config: Config, name: str, up: bool, facts: Facts | None = None) -> None:
    mark_states(root, config, {name: (up, facts)})
