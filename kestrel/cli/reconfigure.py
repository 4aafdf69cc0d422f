"""kestrel-reconfigure: regenerate the frontend's files, run configure phases, reload what changed."""

from __future__ import annotations

import logging

import click

from kestrel.cli.common import Command, Context, global_options, pass_context, print_dry_run, run
from kestrel.cli.completion import complete_images
from kestrel.cli.images import follows
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.images import build, phases, scripts, store
from kestrel.plan import plan_lines

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@click.command(
    cls=Command,
    help="Regenerate frontend files and reload only the services whose files changed; with --image or "
    "--all, run the images' configure phases (install phases too with --force or when never run).",
)
@global_options
@click.option("--all", "everything", is_flag=True, help="Everything: the frontend and every image.")
@click.option("--frontend", is_flag=True, help="The frontend: dnsmasq, boot menus, NFS, nginx, /etc/hosts.")
@click.option(
    "--image",
    "image_names",
    shell_complete=complete_images,
    multiple=True,
    help="Run the phases of image NAME (repeatable).",
)
@click.option("--force", is_flag=True, help="Run the install, packages and post-install phases again too.")
@click.option(
    "--dry-run", is_flag=True, help="Print what would change and which phase scripts would run; change nothing."
)
@click.option("--diff", is_flag=True, help="Show unified diffs of the changes.")
@pass_context
def command(
    ctx: Context, everything: bool, frontend: bool, image_names: tuple[str, ...], force: bool, dry_run: bool, diff: bool
) -> None:
    names = [i.name for i in store.published_images(ctx.root)] if everything else list(image_names)
    frontend_side = phases.Target(ctx.root, ctx.config, list(ctx.config.modules))
    if dry_run:
        # what each part would run, then the frontend's plan (against the versions published now)
        lines = (
            phases.pending(frontend_side, scripts.load_state(frontend_side.state_path), force)
            if (everything or frontend)
            else []
        )
        for name in names:
            lines += [*build.describe_update(ctx.root, ctx.config, name, force=force), follows(name)]
        plan, _ = reconfigure_frontend(ctx.root, ctx.config, ctx.config_path, dry_run=True)
        print_dry_run(lines + plan_lines(ctx.root, plan, diff))
        return
    if everything or frontend:
        phases.run_phases(frontend_side, force=force)
    for name in names:
        build.update_image(ctx.root, ctx.config, name, force=force)
    # the frontend follows the images' new versions too (NFS exports them, boot files point at them)
    plan, report = reconfigure_frontend(ctx.root, ctx.config, ctx.config_path, diff=diff)
    if report:
        click.echo(report, nl=False)
    elif plan.is_empty and (everything or frontend):
        logger.info("Nothing to do")


def main() -> None:
    run(command, "kestrel-reconfigure")


if __name__ == "__main__":
    main()
