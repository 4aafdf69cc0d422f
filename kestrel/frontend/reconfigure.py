"""Reconfiguring the frontend: plan its files under the lock, check dnsmasq's new config, write, reload what changed."""

from __future__ import annotations

from pathlib import Path

from kestrel.config import Config
from kestrel.frontend import dnsmasq, firewall, services
from kestrel.frontend.desired import plan_frontend
from kestrel.gateway import files as gateway
from kestrel.plan import Plan, describe_plan
from kestrel.sysroot import Sysroot


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
    plan = plan_frontend(root, config, config_path)
    for change in plan.changes:
        if change.path == dnsmasq.CONF_PATH and change.new is not None:
            dnsmasq.check_config(root, change.new)
    gateway.check_plan(root, plan)
    firewall.check_plan(root, config, plan)
    return plan
