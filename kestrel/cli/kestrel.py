"""kestrel: the frontend as a whole (doctor: is it able to boot nodes; uninstall: take Kestrel's files off it)."""

from __future__ import annotations

import sys

import click

from kestrel.cli.common import (
    Context,
    Group,
    dry_run_options,
    global_options,
    json_option,
    pass_context,
    print_dry_run,
    run,
)
from kestrel.frontend import doctor, uninstall
from kestrel.plan import plan_lines


@click.group(cls=Group, help="The frontend as a whole: diagnose it, or take Kestrel off it.")
@global_options
def command() -> None:
    pass


@command.command(
    "doctor",
    help="Check the frontend: the cluster interface, each service and its ports, other DHCP servers, boot files, "
    "NFS exports, images served, the root key, free disk, the clock. One line per check; exit 1 if any fails.",
)
@json_option
@click.option(
    "--wait",
    default=4.0,
    show_default=True,
    help="Seconds to wait for DHCP servers to answer the probe (dnsmasq pings an address for 3 s before offering it).",
)
@pass_context
def doctor_command(ctx: Context, as_json: bool, wait: float) -> None:
    checks = doctor.diagnose(ctx.root, ctx.config, probe_wait=wait)
    click.echo(doctor.report(checks, as_json), nl=False)
    if doctor.failed(checks):
        sys.exit(1)


@command.command(
    "uninstall",
    help="Remove Kestrel's files from the system (drop-ins of dnsmasq, nginx and NFS, its units, the lease hook, its "
    "blocks in /etc/hosts and ssh_known_hosts) and reload what used them. Keeps /etc/kestrel, the registry, images "
    "and homes. setup.sh --uninstall runs this, then removes the programs.",
)
@dry_run_options
@pass_context
def uninstall_command(ctx: Context, dry_run: bool, diff: bool) -> None:
    if dry_run:
        print_dry_run(plan_lines(ctx.root, uninstall.plan_uninstall(ctx.root, ctx.config), diff))
        return
    uninstall.uninstall(ctx.root, ctx.config)


def main() -> None:
    run(command, "kestrel")


if __name__ == "__main__":
    main()
