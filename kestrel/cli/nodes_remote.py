"""kestrel-nodes exec and check: commands and connectivity checks on many nodes over SSH (added to kestrel-nodes)."""

from __future__ import annotations

from typing import Any

import click

from kestrel import nodeops
from kestrel.cli.common import Context, pass_context, print_json, print_table
from kestrel.errors import KestrelError


class _CommandAfterDashes(click.Command):
    """`exec [NODES...] -- CMD...`: what follows the first `--` is the remote command, never node names."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            args, ctx.meta["remote_command"] = args[:i], args[i + 1:]
        else:
            ctx.meta["remote_command"] = []
        return super().parse_args(ctx, args)


@click.command("exec", cls=_CommandAfterDashes,
               help="Run a command on many nodes in parallel; output lines are prefixed by the node's name. "
                    "Exits 1 if it failed anywhere, and says where.")
@click.argument("node_names", metavar="[NODES]...", nargs=-1)
@click.option("--group", help="Every node of this group.")
@click.option("--user", default="root", show_default=True, help="As this cluster user, with its own key.")
@click.option("--parallel", type=click.IntRange(1, 256), default=16, show_default=True, help="Nodes at a time.")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 600), help="[default: nodes.ssh_timeout]")
@click.option("--timeout", "command_timeout", type=click.FloatRange(0.1), default=600, show_default=True,
              help="Seconds a command may run.")
@pass_context
def exec_command(ctx: Context, node_names: tuple[str, ...], group: str | None, user: str, parallel: int,
                 connect_timeout: float | None, command_timeout: float) -> None:
    argv = click.get_current_context().meta["remote_command"]
    targets = nodeops.select_targets(ctx.root, list(node_names), group)
    results = nodeops.exec_on(ctx.root, ctx.config, targets, " ".join(argv), user=user, parallel=parallel,
                              connect_timeout=connect_timeout, command_timeout=command_timeout)
    for r in results:
        for line in r.stdout.splitlines():
            click.echo(f"{r.target.name}: {line}")
        for line in r.stderr.splitlines():
            click.echo(f"{r.target.name}: {line}", err=True)
    failed = [r for r in results if not r.ok]
    if failed:
        where = ", ".join(f"{r.target.name} ({r.why()})" for r in failed)
        raise KestrelError(f"failed on {len(failed)} of {len(results)} nodes: {where}")
    ctx.detail(f"Ran on {len(results)} nodes")


@click.command("check", help="Per node: ping (ICMP), SSH with the frontend's key, NFS home mounted, and the time "
                             "it took. Nodes that answer SSH are marked up, the others down.")
@click.argument("node_names", metavar="[NODES]...", nargs=-1)
@click.option("--group", help="Every node of this group.")
@click.option("--parallel", type=click.IntRange(1, 256), default=16, show_default=True, help="Nodes at a time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def check_command(ctx: Context, node_names: tuple[str, ...], group: str | None, parallel: int, as_json: bool) -> None:
    targets = nodeops.select_targets(ctx.root, list(node_names), group)
    checks = nodeops.check(ctx.root, ctx.config, ctx.config_path, targets, ctx.say, parallel)
    rows: list[dict[str, Any]] = [
        {"node": c.target.name, "address": c.target.address, "ping": c.ping, "ssh": c.ssh, "home": c.home,
         "seconds": round(c.seconds, 2), "ok": c.ok} for c in checks]
    if as_json:
        print_json(rows)
    else:
        print_table([{**r, "time": f"{r['seconds']:.2f} s"} for r in rows],
                    ["node", "address", "ping", "ssh", "home", "time"])
    bad = [c for c in checks if not c.ok]
    if bad:
        raise KestrelError(f"{len(bad)} of {len(checks)} nodes failed: "
                           + ", ".join(f"{c.target.name} ({c.problems()})" for c in bad))


def add_commands(group: click.Group) -> None:
    group.add_command(exec_command)
    group.add_command(check_command)
