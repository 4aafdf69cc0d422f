"""What the frontend learns about nodes: registration from DHCP leases (kestrel-nodes register, the lease hook)
and liveness from SSH visits (kestrel-nodes check); each lands through node_changes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from kestrel import names
from kestrel.config import Config, DhcpMode
from kestrel.errors import CommandError, InputError
from kestrel.frontend.node_changes import change_nodes, mark_states
from kestrel.nodes import fanout, knownhosts, leases, registry, ssh
from kestrel.nodes import state as nodestate
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
    image = names.parse_label(image or config.nodes.default_image, "image name")
    group = names.parse_label(group or config.nodes.default_group, "group name")
    path = leases_file or root.path(config.network.leases_file)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise InputError(f"{path}: no leases file (is dnsmasq running? or pass --leases FILE)") from None
    found, warnings = leases.parse_leases(text, str(path))
    for w in warnings:
        logger.warning(w)
    known = {n.mac for n in registry.load_registry(root)}
    fresh = [lease for lease in leases.latest_by_mac(found) if lease.mac not in known]
    if not fresh:
        return [], Plan()
    facts: dict[str, Facts] = {}
    if verify:
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
    with ssh.root_pool(root, config.nodes.ssh_key, timeout, config.network.netns, trusted=images_keys) as pool:
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
    """add: the node is up (a new MAC is registered if nodes.auto_register); del: down; old: only registers.

    dnsmasq runs its script serially and sends `old` for every lease when it starts, so a known MAC with
    `old` returns before taking the lock.
    """
    mac = names.parse_mac(mac)
    address = names.parse_ip(ip)
    if action not in ("add", "old", "del", "arp-add", "arp-del"):
        raise InputError(f"lease event {action!r} is not add, old, del, arp-add or arp-del")
    if action.startswith("arp-"):
        # Without leases of its own (proxy DHCP, DHCP off) dnsmasq sees nodes only in the ARP table: a machine
        # seen there is as good as a lease. An entry that ages out says nothing about the node.
        if action == "arp-del" or config.network.dhcp is DhcpMode.AUTHORITATIVE:
            return None
        action = "add"
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
            logger.info(f"Registered {node.name} ({node.mac}, {node.ip})")
        if action == "add":
            states = nodestate.mark(states, mac, True, int(time.time()))
        elif action == "del" and node.ip == address:
            # A node moved from its dynamic lease to its static address gets `del` for the old lease.
            states = nodestate.mark(states, mac, False, int(time.time()))
        result.append(node)
        return nodes, states

    change_nodes(root, config, change)
    return result[0] if result else None


def check(root: Sysroot, config: Config, targets: list[ssh.Target], parallel: int = 10) -> list[fanout.Check]:
    """Ping, SSH and the home mount of every target; nodes that answer SSH are marked up, the others down
    (down nodes leave the default hostfiles)."""
    timeout = float(config.nodes.ssh_timeout)
    with ssh.root_pool(root, config.nodes.ssh_key, timeout, config.network.netns) as pool:
        results = fanout.fan_out(targets, lambda t: fanout.check_one(pool, t, config.nfs.home, timeout), parallel)
    checks = [c for c, _ in results]
    if results:
        try:
            mark_states(root, config, {c.target.name: (c.ssh_ok, facts) for c, facts in results})
        except CommandError as e:
            logger.warning(f"node states not saved: {e}")
    return checks
