"""kestrel-nodes status, monitor, poweroff, reboot, rollout: the operations commands of kestrel-nodes."""

from __future__ import annotations

import time

import click

from kestrel.cli.common import Context, json_option, pass_context, print_json, print_table
from kestrel.cli.completion import complete_groups, complete_nodes
from kestrel.errors import InputError
from kestrel.nodes import fanout, probes, registry, ssh
from kestrel.nodes.power import Power
from kestrel.status import monitor, page, report, rollout

STATUS_COLUMNS = ["name", "state", "stage", "since", "last_seen", "image", "version", "drift", "uptime", "load"]


def current_status(ctx: Context, wanted: tuple[str, ...] = (), group: str | None = None) -> list[report.NodeStatus]:
    """The rows of WANTED (or GROUP, or every node); probed over SSH here when no monitor keeps probes fresh."""
    now = time.time()
    chosen = registry.select_nodes(registry.load_registry(ctx.root), wanted, group)
    found = None
    if not monitor.is_running(ctx.root, ctx.config, now):
        found = monitor.probe_all(ctx.root, ctx.config, chosen, probes.load_probes(ctx.root))
    rows = {r.name: r for r in report.status(ctx.root, ctx.config, found, time.time())}
    return [rows[n.name] for n in chosen if n.name in rows]


@click.command(
    "status",
    help="Per node: its stage in the boot chain (registered, dhcp-lease, boot-script, kernel, initrd, root-mounted, "
    "ssh-ready; or down) and since when, last seen, image and the version it booted, drift (a newer version "
    "is current: reboot to update), uptime and load. Read from the boot logs and the monitor's SSH probes "
    "(probed here if no monitor runs).",
)
@click.argument("node_names", metavar="[NODES]...", nargs=-1, shell_complete=complete_nodes)
@click.option("--group", shell_complete=complete_groups, help="Every node of this group (NODES may also say @GROUP).")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until interrupted.")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=1.0, show_default=True)
@json_option
@pass_context
def status_command(
    ctx: Context, node_names: tuple[str, ...], group: str | None, watch: bool, interval: float, as_json: bool
) -> None:
    while True:
        rows = current_status(ctx, node_names, group)
        if watch and not as_json:
            click.clear()
        if as_json:
            print_json([r.as_json() for r in rows])
        else:
            now = time.time()
            columns = STATUS_COLUMNS + (["firewall"] if any(r.firewall is not None for r in rows) else [])
            print_table([page.shown(r, now, relative=True) for r in rows], columns)
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@click.command(
    "monitor",
    help="Follow the boot logs and probe the nodes over SSH: marks nodes that stop answering down within "
    "nodes.down_after seconds and rewrites the status page (http://FRONTEND/status/) on every change. "
    "Runs until stopped (the lab supervises it; kestrel-monitor.service on a real frontend).",
)
@click.option("--once", is_flag=True, help="One round of probes, write the page, exit.")
@pass_context
def monitor_command(ctx: Context, once: bool) -> None:
    monitor.run_monitor(ctx.root, ctx.config, once=once)


def _power_targets(ctx: Context, names: tuple[str, ...], group: str | None, everything: bool) -> list[ssh.Target]:
    if not (names or group or everything):
        raise InputError("name the nodes, or give --group G or --all")
    if everything and (names or group):
        raise InputError("--all takes no node names and no --group")
    return fanout.select_targets(ctx.root, list(names), group)


def _power_command(action: Power, waits_for: str) -> click.Command:
    @click.command(
        str(action),
        help=f"{'Power off' if action is Power.POWEROFF else 'Reboot'} nodes over SSH, gracefully (systemd on the "
        f"node). --wait returns once they are {waits_for}. A node that cannot be reached is named, in one line.",
    )
    @click.argument("node_names", metavar="[NODES]...", nargs=-1, shell_complete=complete_nodes)
    @click.option(
        "--group", shell_complete=complete_groups, help="Every node of this group (NODES may also say @GROUP)."
    )
    @click.option("--all", "everything", is_flag=True, help="Every registered node.")
    @click.option("--wait", is_flag=True, help=f"Return once they are {waits_for}.")
    @click.option("--timeout", type=click.FloatRange(1), default=600, show_default=True, help="Seconds --wait waits.")
    @pass_context
    def power_command(
        ctx: Context, node_names: tuple[str, ...], group: str | None, everything: bool, wait: bool, timeout: float
    ) -> None:
        targets = _power_targets(ctx, node_names, group, everything)
        rollout.power_nodes(ctx.root, ctx.config, targets, action, wait=wait, timeout=timeout)

    return power_command


poweroff_command = _power_command(Power.POWEROFF, "down (no longer answering SSH)")
reboot_command = _power_command(Power.REBOOT, "back from a new boot and SSH-ready")


@click.command(
    "rollout",
    help="Reboot the up nodes whose booted image version is not the current one (status: 'reboot to update'), "
    "--batch at a time; each batch must be back, SSH-ready on the current version, before the next. Stops at "
    "the first node that does not come back.",
)
@click.option("--group", shell_complete=complete_groups, help="Only this group.")
@click.option("--batch", type=click.IntRange(1, 10000), default=1, show_default=True, help="Nodes rebooted at once.")
@click.option("--timeout", type=click.FloatRange(1), default=600, show_default=True, help="Seconds a batch may take.")
@pass_context
def rollout_command(ctx: Context, group: str | None, batch: int, timeout: float) -> None:
    rows = current_status(ctx, (), group)
    rollout.rollout(ctx.root, ctx.config, rows, batch=batch, timeout=timeout)


COMMANDS = [status_command, monitor_command, poweroff_command, reboot_command, rollout_command]
