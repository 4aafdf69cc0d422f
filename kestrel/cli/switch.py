"""kestrel-switch: the VXLAN switch host and every server's cluster bridge, built from the frontend over SSH."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from kestrel.cli.common import Context, Group, global_options, json_option, pass_context, print_dry_run, print_rows, run
from kestrel.errors import CommandError, InputError
from kestrel.nodes import switchhosts

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@contextmanager
def _switch(ctx: Context) -> Iterator[switchhosts.Switch]:
    if ctx.config.switch is None:
        raise InputError(f"{ctx.config_path}: no 'switch:' section; see etc-kestrel/kestrel.yaml")
    sw = switchhosts.Switch(ctx.root, ctx.config)
    try:
        yield sw
    finally:
        sw.close()


@click.group(
    cls=Group, help="Join the cluster bridges of the servers (servers:) through one VXLAN switch host (switch:)."
)
@global_options
@click.pass_context
def command(cctx: click.Context) -> None:
    pass


@command.command(help="Build the hub on the switch host and each server's VXLAN to it; a second run changes nothing.")
@click.option("--dry-run", is_flag=True, help="Connect and print what it would change; change nothing.")
@pass_context
def up(ctx: Context, dry_run: bool) -> None:
    mtu = 0

    def plan(sw: switchhosts.Switch) -> list[switchhosts.Change]:
        nonlocal mtu
        mtu, changes = sw.plan_up()
        return changes

    changes = _carry_out(ctx, plan, removing=False, dry_run=dry_run)
    if changes is not None:
        done = [c.state.plan.server.name for c in changes if not c.empty]
        logger.info(f"Switch up, MTU {mtu}: " + (f"changed {', '.join(done)}" if done else "nothing changed"))


@command.command(help="Remove exactly what up made on each server (its manifest), and the peer filter.")
@click.option("--dry-run", is_flag=True, help="Connect and print what it would remove; change nothing.")
@pass_context
def down(ctx: Context, dry_run: bool) -> None:
    changes = _carry_out(ctx, lambda sw: sw.plan_down(), removing=True, dry_run=dry_run)
    if changes is not None:
        removed = any(c.lines() for c in changes)
        logger.info("Switch down" + ("" if removed else ": nothing to remove"))


def _carry_out(
    ctx: Context, plan: Callable[[switchhosts.Switch], list[switchhosts.Change]], *, removing: bool, dry_run: bool
) -> list[switchhosts.Change] | None:
    """The changes PLAN makes on the connected hosts, printed (DRY_RUN: only that, and None) or applied, then
    said line by line."""
    with _switch(ctx) as sw:
        changes = plan(sw)
        lines = [line for c in changes for line in c.lines()]
        if dry_run:
            print_dry_run(lines)
            return None
        sw.apply(changes, removing=removing)
    for line in lines:
        logger.info(line)
    return changes


@command.command(
    help="Per server: each switch device's state, VNI, MTU, counters, peer filter drops; exit 1 if one is unreachable."
)
@json_option
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    with _switch(ctx) as sw:
        rows, failed = sw.status()
    columns = ["server", "device", "kind", "vni", "remote", "state", "mtu", "rx_packets", "tx_packets", "dropped"]
    print_rows(rows, columns, as_json, lambda r: {k: "-" if v is None else v for k, v in r.items()})
    if failed:
        raise CommandError(failed[0] + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))


@command.command(help="Show SERVER's SSH host key fingerprint and, once confirmed, record it for kestrel-switch.")
@click.argument("server")
@click.option("--fingerprint", help="Record the key only if its fingerprint is this (SHA256:...); no question.")
@pass_context
def trust(ctx: Context, server: str, fingerprint: str | None) -> None:
    def confirm(offered: str) -> bool:
        click.echo(f"{server}: host key fingerprint {offered}")
        if fingerprint is not None:
            return offered == fingerprint
        return click.confirm("Is this the server's key (compare with ssh-keygen -lf on the server)?", err=True)

    logger.info(switchhosts.trust(ctx.root, ctx.config, server, confirm))


def main() -> None:
    run(command, "kestrel-switch")


if __name__ == "__main__":
    main()
