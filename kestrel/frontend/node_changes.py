"""Every change of the registry or node state: locked, planned (registry, state, hosts, hostfiles), applied."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from kestrel import names
from kestrel.config import DEFINITIONS_DIR, Config
from kestrel.errors import InputError
from kestrel.frontend import desired, firewall, services
from kestrel.images import definitions, store
from kestrel.nodes import forgotten, pending, registry
from kestrel.nodes import state as nodestate
from kestrel.nodes.leases import Lease
from kestrel.nodes.pending import Pending
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


def change_nodes(
    root: Sysroot,
    config: Config,
    change: Change,
    *,
    dry_run: bool = False,
    waiting: Callable[[Pending], Pending] | None = None,
) -> Plan:
    """The one way nodes change: under the lock, CHANGE the registry and state, write what differs, reload dnsmasq.

    WAITING changes the pending list (nodes.auto_register: approve) in the same plan; a registered MAC always
    leaves it. Each file is replaced atomically, so a crash leaves every file old or new; the next change
    converges. DRY_RUN: only plan (describe_plan says what it would do).
    """
    with contextlib.nullcontext() if dry_run else root.lock():  # a dry run writes nothing, not even the lock
        before = registry.load_registry(root)
        nodes, states = change(before, nodestate.load_states(root))
        registered = {n.mac for n in nodes}
        states = nodestate.keep_only(states, registered)
        plan = plan_nodes(root, config, nodes, states)
        old = pending.load_pending(root)
        new = waiting(old) if waiting else old
        new = {mac: m for mac, m in new.items() if mac not in registered}
        if new != old:
            plan.merge(plan_files(root, [Desired(pending.PENDING_PATH, pending.format_pending(new), mode=0o600)]))
        gone = forgotten.load_forgotten(root)
        if (now := forgotten.update(gone, {n.mac for n in before}, registered, int(time.time()))) != gone:
            plan.merge(plan_files(root, [Desired(forgotten.FORGOTTEN_PATH, forgotten.format_forgotten(now))]))
        if not dry_run:
            services.apply(root, plan)
        return plan


def _nodes_only(fn: Callable[[list[Node]], list[Node]]) -> Change:
    return lambda nodes, states: (fn(nodes), states)


def add(root: Sysroot, config: Config, mac: str, *, dry_run: bool = False, **fields: str | None) -> tuple[Node, Plan]:
    """kestrel-nodes add: one node by hand (name, ip, image, group); name and address allocated if absent."""
    check_image(root, fields.get("image"))
    made: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        nodes = registry.add_node(nodes, config, mac=mac, **fields)
        made.append(nodes[-1])
        return nodes, states

    plan = change_nodes(root, config, change, dry_run=dry_run)
    return made[0], plan


def defined_images(root: Sysroot) -> list[str]:
    """Images a node may name: those with a definition (the admin's or shipped) and those published."""
    found = {i.name for i in store.published_images(root)}
    for folder in (root.path(DEFINITIONS_DIR), definitions.SHIPPED_IMAGES):
        found.update(p.stem for p in folder.glob("*.yaml") if folder.is_dir())
    return sorted(found)


def check_image(root: Sysroot, image: str | None) -> None:
    """An image given by hand (--image) names a defined image: a typo would leave the node without a root."""
    if image is None:
        return
    names.parse_label(image, "image name")
    known = defined_images(root)
    if image not in known:
        raise InputError(f"--image: no image {image!r} is defined (defined: {', '.join(known) or 'none'})")


def remove(root: Sysroot, config: Config, words: list[str], *, dry_run: bool = False) -> Plan:
    """Forget the nodes WORDS name (names, host lists, @group)."""
    return change_nodes(root, config, _nodes_only(lambda nodes: registry.remove_nodes(nodes, words)), dry_run=dry_run)


def set_fields(root: Sysroot, config: Config, words: list[str], *, dry_run: bool = False, **fields: str | None) -> Plan:
    """kestrel-nodes set: the nodes WORDS name (names, host lists, @group) get FIELDS."""
    check_image(root, fields.get("image"))
    return change_nodes(
        root, config, _nodes_only(lambda nodes: registry.set_nodes(nodes, config, words, **fields)), dry_run=dry_run
    )


def approve(
    root: Sysroot,
    config: Config,
    macs: list[str],
    *,
    dry_run: bool = False,
    name: str | None = None,
    group: str | None = None,
    image: str | None = None,
) -> tuple[list[Node], Plan]:
    """kestrel-nodes approve: the pending machines of MACS ("all": every one) become nodes at their leased address
    (or the next of network.static_pool), with NAME (one machine only), GROUP and IMAGE if given."""
    made: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        chosen = pending.select(pending.load_pending(root), macs)
        if name is not None and len(chosen) != 1:
            raise InputError(f"--name {name!r} names one node: approve one MAC with it, not {len(chosen)}")
        for machine in chosen:
            leased = [Lease(0, machine.mac, machine.ip, None, None)]
            nodes, new, refused = registry.register_leases(nodes, config, leased, image=image, group=group)
            if refused:
                raise InputError(refused[0])
            if name is not None:
                nodes = registry.set_node(nodes, config, new[0].name, new_name=name)
                new = [registry.find_node(nodes, name)]
            made.extend(new)
        return nodes, states

    plan = change_nodes(root, config, change, dry_run=dry_run)
    return made, plan


def reject(root: Sysroot, config: Config, macs: list[str], *, dry_run: bool = False) -> tuple[list[str], Plan]:
    """kestrel-nodes reject: forget pending machines (one that asks for a lease again is pending again)."""
    chosen = [m.mac for m in pending.select(pending.load_pending(root), macs)]
    plan = change_nodes(
        root,
        config,
        lambda nodes, states: (nodes, states),
        dry_run=dry_run,
        waiting=lambda p: {mac: m for mac, m in p.items() if mac not in chosen},
    )
    return chosen, plan


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
