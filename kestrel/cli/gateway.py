"""kestrel-gateway: the load balancer of the gateway module and its backends."""

from __future__ import annotations

import click

from kestrel.cli.common import Context, Group, global_options, json_option, pass_context, print_rows, run
from kestrel.errors import InputError
from kestrel.gateway import backends, status
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate


@click.group(
    cls=Group, help="The gateway (module gateway): a load balancer on the frontend over a group's web servers."
)
@global_options
def command() -> None:
    pass


@command.command("status", help="Each backend: its health, the requests it answered, its errors.")
@json_option
@pass_context
def status_command(ctx: Context, as_json: bool) -> None:
    config = ctx.config
    if not backends.is_enabled(config):
        raise InputError(f"{ctx.config_path}: modules: the gateway module is not on")
    chosen = backends.select_backends(config, registry.load_registry(ctx.root), nodestate.load_states(ctx.root))
    rows = [s.row() for s in status.gateway_status(ctx.root, config, chosen)]
    if not as_json and not rows:
        click.echo(f"No backend: no node of group {backends.group_of(config)} is registered and up (503 page served)")
        return
    print_rows(rows, ["name", "address", "health", "requests", "errors", "detail"], as_json)


def main() -> None:
    run(command, "kestrel-gateway")


if __name__ == "__main__":
    main()
