"""kestrel-nodes wake: Wake-on-LAN for registered nodes, physical and qemu alike (kestrel-vm listens)."""

from __future__ import annotations

import click

from kestrel import registry, wake
from kestrel.cli.common import Context, pass_context

# KestrelHPC's spellings, rewritten by kestrel-nodes into the subcommand below.
ALIASES = {"--wake-node": ["wake"], "--wake-mac": ["wake", "--mac"], "--wake-group": ["wake", "--group"]}


@click.command("wake", help="Send Wake-on-LAN magic packets to nodes (by name, --group, --all or --mac) on the "
               "cluster network's broadcast. KestrelHPC's --wake-node/--wake-mac/--wake-group work too.")
@click.argument("names", nargs=-1)
@click.option("--group", help="Every node of this group.")
@click.option("--all", "everything", is_flag=True, help="Every registered node.")
@click.option("--mac", "macs", multiple=True, help="A MAC address, registered or not (repeatable).")
@click.option("--stagger", type=click.FloatRange(0, 600), default=0.0, show_default=True,
              help="Seconds between two packets (spreads the power-on current of a rack).")
@pass_context
def wake_command(ctx: Context, names: tuple[str, ...], group: str | None, everything: bool,
                 macs: tuple[str, ...], stagger: float) -> None:
    targets = wake.select_targets(registry.load_registry(ctx.root), names, group, everything, macs)
    wake.send_magic(ctx.config, [mac for _, mac in targets], stagger=stagger, say=ctx.say,
                    labels={mac: label for label, mac in targets if label})


def add_commands(group: click.Group) -> None:
    group.add_command(wake_command)
