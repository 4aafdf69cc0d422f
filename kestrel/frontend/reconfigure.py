"""Reconfiguring the frontend: plan its files under the lock, check dnsmasq's new config, write, reload what changed."""

from __future__ import annotations

import logging
import re
from ipaddress import IPv4Address
from pathlib import Path

from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.frontend import dnsmasq, firewall, services
from kestrel.frontend.desired import plan_frontend
from kestrel.gateway import files as gateway
from kestrel.nodes import registry
from kestrel.plan import Plan, describe_plan
from kestrel.sysroot import Sysroot, decode
from kestrel.templates import unmatched_overrides

logger = logging.getLogger(__name__)
# The dynamic range of the dnsmasq config Kestrel wrote last: dhcp-range=START,END,NETMASK,LEASE_TIME
_APPLIED_RANGE = re.compile(r"^dhcp-range=(\d+\.\d+\.\d+\.\d+),(\d+\.\d+\.\d+\.\d+),", re.M)


def reconfigure_frontend(
    root: Sysroot, config: Config, config_path: Path, *, dry_run: bool = False, diff: bool = False
) -> tuple[Plan, str]:
    """Plan under the lock, check the dnsmasq config, then write and reload only what changed.

    Returns the plan and, for a dry run, its description (nothing is written then, not even the lock file).
    """
    if dry_run:
        plan = checked_plan(root, config, config_path)
        return plan, describe_plan(root, plan, diff)
    with root.lock():
        plan = checked_plan(root, config, config_path)
        report = describe_plan(root, plan, diff=True) if diff else ""
        services.apply(root, plan)
        return plan, report


def checked_plan(root: Sysroot, config: Config, config_path: Path) -> Plan:
    """The frontend's plan, refused if dnsmasq (or HAProxy, the gateway's, or nft, the firewall's) would refuse its
    new config. Reads only (a writer holds the lock around it and the apply; a dry run of a tree that nothing
    wrote yet, like the lab's first, needs none)."""
    check_range_over_static(root, config, config_path)
    for path in unmatched_overrides(root):
        logger.warning(f"{path} matches no shipped template, so nothing uses it (misnamed?)")
    plan = plan_frontend(root, config, config_path)
    for change in plan.changes:
        if change.path == dnsmasq.CONF_PATH and change.new is not None:
            dnsmasq.check_config(root, change.new)
    gateway.check_plan(root, plan)
    firewall.check_plan(root, config, plan)
    return plan


def check_range_over_static(root: Sysroot, config: Config, config_path: Path) -> None:
    """network.dhcp_range may not grow over the static addresses of registered nodes.

    Every registered address is reserved by a dhcp-host line; the registry only lets an address inside the
    dynamic range be registered when the node leased it there (registry.check_ip). So the addresses that the
    range applied now (the dnsmasq config written last) leaves out are static ones: those the new range covers
    are the overlap. A first render (no config written yet) has no static address to lose.
    """
    applied = _APPLIED_RANGE.search(decode(root.read(dnsmasq.CONF_PATH)) or "")
    if applied is None:
        return
    old = (IPv4Address(applied[1]), IPv4Address(applied[2]))
    start, end = config.network.dhcp_range
    covered = [n for n in registry.load_registry(root) if start <= n.ip <= end and not old[0] <= n.ip <= old[1]]
    if covered:
        text = _read(config_path)
        line = next((i for i, t in enumerate(text.splitlines(), 1) if t.lstrip().startswith("dhcp_range:")), 1)
        nodes = ", ".join(f"{n.name} ({n.ip})" for n in covered[:10]) + (" ..." if len(covered) > 10 else "")
        raise InputError(
            f"{config_path}:{line}: network.dhcp_range: {start}-{end} covers the static addresses of registered "
            f"nodes {nodes}; keep the range clear of them or give those nodes other addresses (kestrel-nodes set)"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
