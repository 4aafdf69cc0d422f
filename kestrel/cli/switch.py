"""kestrel-switch: the VXLAN switch host and the servers' bridges, on the host it runs on."""

from __future__ import annotations

import logging

import click

from kestrel.cli.common import Context, Group, global_options, json_option, pass_context, print_dry_run, print_rows, run
from kestrel.config import SwitchConfig
from kestrel.errors import InputError
from kestrel.net import switch

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


def _switch(ctx: Context) -> SwitchConfig:
    if ctx.config.switch is None:
        raise InputError(f"{ctx.config_path}: no 'switch:' section; see etc-kestrel/kestrel.yaml")
    return ctx.config.switch


@click.group(cls=Group, help="Join the cluster bridges of several servers through one VXLAN switch host.")
@global_options
@click.pass_context
def command(cctx: click.Context) -> None:
    pass


def _add_change(verb: str, planner: switch.Planner, help: str) -> None:
    """`kestrel-switch up` and `down`: the same command around another planner."""

    @command.command(verb, help=help)
    @click.option("--netns", help="Act inside this network namespace (tests, the lab).")
    @click.option("--dry-run", is_flag=True, help="Print the ip commands it would run; change nothing.")
    @pass_context
    def change(ctx: Context, netns: str | None, dry_run: bool) -> None:
        if dry_run:
            _, commands = switch.plan(_switch(ctx), planner, netns)
            print_dry_run([f"Would run {' '.join(argv)}" for argv in commands])
            return
        role, commands = switch.apply(_switch(ctx), planner, netns)
        for argv in commands:
            logger.info("Ran " + " ".join(argv))
        logger.info(f"Switch {role}: {verb}" + ("" if commands else " (nothing to do)"))


_add_change("up", switch.plan_up, "Create this host's part (the hub, or a server's VXLAN to the hub); idempotent.")
_add_change("down", switch.plan_down, "Remove this host's VXLANs (and the hub's bridge).")


@command.command(help="This host's switch devices with their packet counters.")
@click.option("--netns", help="Look inside this network namespace.")
@json_option
@pass_context
def status(ctx: Context, netns: str | None, as_json: bool) -> None:
    print_rows(
        switch.status(_switch(ctx), netns),
        ["role", "device", "kind", "vni", "remote", "state", "rx_packets", "tx_packets"],
        as_json,
    )


def main() -> None:
    run(command, "kestrel-switch")


if __name__ == "__main__":
    main()
