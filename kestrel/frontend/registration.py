"""What the frontend learns about nodes: registration from DHCP leases (kestrel-nodes register, the lease hook)
and liveness from SSH visits (kestrel-nodes check); each lands through node_changes."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from kestrel import names
from kestrel.config import APPROVE, Config, DhcpMode
from kestrel.errors import CommandError, InputError
from kestrel.frontend import hostkeys
from kestrel.frontend.node_changes import change_nodes, mark_states
from kestrel.inputfile import LEASES_LIMIT, read_input
from kestrel.nodes import fanout, forgotten, knownhosts, leasequeue, leases, pending, registry, ssh
from kestrel.nodes import state as nodestate
from kestrel.nodes.leasequeue import LeaseEvent
from kestrel.nodes.pending import Pending
from kestrel.nodes.registry import Node
from kestrel.nodes.state import Facts, States
from kestrel.plan import Plan
from kestrel.sysroot import Sysroot
from kestrel.users.hosttrust import known_hosts_body

logger = logging.getLogger(__name__)

_VISITORS = 16


def register(
    root: Sysroot,
    config: Config,
    *,
    leases_file: Path | None = None,
    image: str | None = None,
    group: str | None = None,
    verify: bool = True,
    dry_run: bool = False,
) -> tuple[list[Node], Plan]:
    """kestrel-nodes --register: every leased MAC not yet registered (that answers SSH, if VERIFY) becomes a node.

    DRY_RUN changes nothing but still visits the leased addresses (read only: SSH and the facts command), so
    its plan names the nodes a real run would register.
    """
    image = names.parse_label(config.nodes.default_image if image is None else image, "image name")
    group = names.parse_node_name(config.nodes.default_group if group is None else group, "group name")
    path = leases_file or root.path(config.network.leases_file)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no leases file (is dnsmasq running? or pass --leases FILE)")
    text = read_input(path, LEASES_LIMIT).decode("utf-8", "replace")
    found, warnings = leases.parse_leases(text, str(path))
    for w in warnings:
        logger.warning(w)
    known = {n.mac for n in registry.load_registry(root)}
    fresh = [lease for lease in leases.latest_by_mac(found) if lease.mac not in known]
    # No new lease still goes through change_nodes: it converges every file that follows from the registry
    # (a run killed between the registry's rename and the hosts files left them stale) and replays a lost reload.
    facts: dict[str, Facts] = {}
    if verify and fresh:
        facts = visit(root, config, fresh)
        fresh = [lease for lease in fresh if lease.mac in facts]
    added: list[Node] = []

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        nodes, new, refused = registry.register_leases(nodes, config, fresh, image=image, group=group)
        for w in refused:
            logger.warning(w)
        stamp = int(time.time())
        for n in new:
            if n.mac in facts:
                states = nodestate.mark(states, n.mac, True, stamp, facts[n.mac])
        added.extend(new)
        return nodes, states

    plan = change_nodes(root, config, change, dry_run=dry_run)
    if not dry_run:
        for n in added:
            logger.info(f"Registered {n.name} ({n.mac}, {n.ip})")
    return added, plan


def visit(root: Sysroot, config: Config, found: list[leases.Lease]) -> dict[str, Facts]:
    """SSH into each leased address with the frontend's key, in parallel: the facts of those that answer.

    A node must show a host key of one of the images (or one in Kestrel's known_hosts): a machine that
    merely answers SSH on the cluster network is not trusted.
    """
    by_target = {ssh.Target(str(lease.ip), str(lease.ip), config.nodes.ssh_port): lease for lease in found}
    timeout = float(config.nodes.ssh_timeout)
    images_keys = knownhosts.parse(known_hosts_body(root, config))

    def vouch(target: ssh.Target) -> bool:
        """With the firewall module a node shows its boot key until it is registered and gets the image's: the
        MAC that answers for the leased address must be the lease's."""
        lease = by_target.get(target)
        return lease is not None and hostkeys.neighbour_mac(config, target.address) == lease.mac

    chosen = vouch if hostkeys.enabled(config) else None
    with ssh.root_pool(root, config.nodes.ssh_key, timeout, config.network.netns, images_keys, chosen) as pool:
        results = fanout.run_many(pool, list(by_target), nodestate.FACTS_COMMAND, parallel=_VISITORS, timeout=timeout)
    out: dict[str, Facts] = {}
    for lease, result in zip(by_target.values(), results, strict=True):
        why = result.why()
        if result.ok:
            try:
                out[lease.mac] = nodestate.parse_facts(result.stdout)
                continue
            except ValueError as e:
                why = str(e)
        logger.info(f"Skipped {lease.mac} ({lease.ip}): {why}; not registered (--no-verify registers it anyway)")
    return out


# -- dnsmasq's dhcp-script: lease events -------------------------------------------------------------------


def lease_event(root: Sysroot, config: Config, action: str, mac: str, ip: str) -> Node | None:
    """One lease event applied at once (kestrel-nodes lease-event); the hook queues them for the registrar."""
    return lease_events(root, config, [leasequeue.parse_event(action, mac, ip, int(time.time()))])[0]


def lease_events(root: Sysroot, config: Config, events: list[LeaseEvent]) -> list[Node | None]:
    """EVENTS in order, in one change of the nodes: add marks a node up (a new MAC is registered if
    nodes.auto_register is true, pending if approve), del of its address down, old only registers. One write
    of each file, one reload.

    dnsmasq sends `old` for every lease when it starts: when no event can change anything (known MACs with
    `old`), nothing is locked or planned. The node of each event, None where it changed nothing.
    """
    gone = forgotten.load_forgotten(root)
    effective = [_as_lease_event(e, config) for e in events]
    effective = [None if e is None or forgotten.ignores(gone, e) else e for e in effective]
    known = {n.mac: n for n in registry.load_registry(root)}
    if not any(e and _may_change(e, e.mac in known, config.nodes.auto_register) for e in effective):
        return [known.get(e.mac) if e and e.action == "old" else None for e in effective]
    result: list[Node | None] = []
    # nodes.auto_register: approve: a new MAC waits in the pending list (a lease and the boot files, nothing more)
    waiting = [e for e in effective if e and e.mac not in known and e.action != "del"]

    def wait(found: Pending) -> Pending:
        if config.nodes.auto_register != APPROVE:
            return found
        for e in waiting:
            found = pending.seen(found, e.mac, e.ip, e.time)
        return found

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        nodes, registered_at = _register_new(nodes, config, effective)
        by_mac = {n.mac: n for n in nodes}
        states = dict(states)
        for i, e in enumerate(effective):
            node = by_mac.get(e.mac) if e else None
            if e is None or node is None or i < registered_at.get(e.mac, 0):
                result.append(None)  # not a lease event, or a new MAC before the event that registers it
                continue
            if e.action == "add":
                _mark(states, e.mac, True, e.time)
            elif e.action == "del" and node.ip == e.ip:
                # A node moved from its dynamic lease to its static address gets `del` for the old lease.
                _mark(states, e.mac, False, e.time)
            result.append(node)
        return nodes, states

    change_nodes(root, config, change, waiting=wait)
    return result


def _as_lease_event(e: LeaseEvent, config: Config) -> LeaseEvent | None:
    """E as the lease event it stands for. Without leases of its own (proxy DHCP, DHCP off) dnsmasq sees nodes
    only in the ARP table: a machine seen there is as good as a lease. An entry that ages out says nothing."""
    if not e.action.startswith("arp-"):
        return e
    if e.action == "arp-del" or config.network.dhcp is DhcpMode.AUTHORITATIVE:
        return None
    return dataclasses.replace(e, action="add")


def _may_change(e: LeaseEvent, known: bool, auto_register: bool | str) -> bool:
    """Whether E may change a file: a known MAC's add or del; an unknown MAC's add or old registers it (true) or
    puts it in the pending list (approve)."""
    if known:
        return e.action != "old"
    return e.action != "del" and auto_register is not False


def _mark(states: States, mac: str, up: bool, when: int) -> None:
    """nodestate.mark in place: one node's entry, not a copy of every node's per event."""
    states[mac] = nodestate.mark({mac: states[mac]} if mac in states else {}, mac, up, when)[mac]


def _register_new(
    nodes: list[Node], config: Config, events: list[LeaseEvent | None]
) -> tuple[list[Node], dict[str, int]]:
    """Every new MAC that one of EVENTS registers, in one pass (names and addresses allocated in event order, as
    one event after the other would), and the index of the event that registers each."""
    known = {n.mac for n in nodes}
    first: dict[str, int] = {}
    fresh: list[leases.Lease] = []
    for i, e in enumerate(events):
        registers = config.nodes.auto_register is True and e is not None and e.action != "del"
        if e and e.mac not in known and e.mac not in first and registers:
            first[e.mac] = i
            fresh.append(leases.Lease(0, e.mac, e.ip, None, None))
    if not first:
        return nodes, {}
    nodes, new, refused = registry.register_leases(nodes, config, fresh)
    for w in refused:
        logger.warning(w)
    for n in new:
        logger.info(f"Registered {n.name} ({n.mac}, {n.ip})")
    return nodes, first


def check(root: Sysroot, config: Config, targets: list[ssh.Target], parallel: int = 10) -> list[fanout.Check]:
    """Ping, SSH and the home mount of every target; nodes that answer SSH are marked up, the others down
    (down nodes leave the default hostfiles)."""
    results = fanout.check_all(root, config, targets, parallel)
    checks = [c for c, _ in results]
    if results:
        try:
            mark_states(root, config, {c.target.name: (c.ssh_ok, facts) for c, facts in results})
        except CommandError as e:
            logger.warning(f"node states not saved: {e}")
    return checks
