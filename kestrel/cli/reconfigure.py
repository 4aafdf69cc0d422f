"""kestrel-reconfigure: regenerate the frontend's files from the config and reload what changed."""

from __future__ import annotations

import click

from kestrel.cli.common import Context, global_options, pass_context, run
from kestrel.frontend import reconfigure_frontend


@click.command(help="Regenerate frontend files and reload only the services whose files changed.")
@global_options
@click.option("--all", "everything", is_flag=True, help="Everything: the frontend and every image.")
@click.option("--frontend", is_flag=True, help="The frontend: dnsmasq, boot menus, NFS, nginx, /etc/hosts.")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--diff", is_flag=True, help="Show unified diffs of the changes.")
@pass_context
def command(ctx: Context, everything: bool, frontend: bool, dry_run: bool, diff: bool) -> None:
    plan, report = reconfigure_frontend(ctx.root, ctx.config, ctx.config_path, dry_run=dry_run, diff=diff,
                                        say=ctx.say)
    if report:
        click.echo(report, nl=False)
    elif not dry_run and plan.is_empty:
        ctx.say("Nothing to do")


def main() -> None:
    run(command, "kestrel-reconfigure")


if __name__ == "__main__":
    main()
