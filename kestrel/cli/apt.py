"""kestrel-apt: apt-get inside a node image (as a new version), then the image's configure phase."""

from __future__ import annotations

import click

from kestrel.cli.common import Command, Context, global_options, pass_context, print_dry_run, run
from kestrel.cli.completion import complete_images
from kestrel.cli.images import follows
from kestrel.errors import InputError
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.images import build


@click.command(
    cls=Command,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    help="Run apt-get ARGS inside image NAME, then its configure phase; publish it as a new version.\n\n"
    "  kestrel-apt NAME install htop\n\n"
    "  kestrel-apt --image NAME --install PKG --uninstall PKG   (KestrelHPC spelling)",
)
@global_options
@click.option("--image", "image", shell_complete=complete_images, help="The image (KestrelHPC spelling).")
@click.option("--install", "install", multiple=True, help="Install PKG (repeatable).")
@click.option("--uninstall", "uninstall", multiple=True, help="Remove PKG (repeatable).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the apt steps and phase scripts it would run; change nothing "
    "(also after NAME: apt-get's own --dry-run is never passed on).",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
def command(
    ctx: Context,
    image: str | None,
    install: tuple[str, ...],
    uninstall: tuple[str, ...],
    dry_run: bool,
    args: tuple[str, ...],
) -> None:
    words = [w for w in args if w != "--dry-run"]
    dry_run = dry_run or len(words) < len(args)
    if image is None:
        if not words:
            raise InputError("name the image: kestrel-apt NAME ARGS... or kestrel-apt --image NAME --install PKG")
        image = words.pop(0)
    steps = [words] if words else []
    if install:
        steps.append(["install", "--no-install-recommends", *install])
    if uninstall:
        steps.append(["remove", "--purge", *uninstall])
    if not steps:
        raise InputError("nothing to do: give apt-get arguments, --install PKG or --uninstall PKG")
    if dry_run:
        print_dry_run([*build.describe_update(ctx.root, ctx.config, image, apt_steps=steps), follows(image)])
        return
    build.update_image(ctx.root, ctx.config, image, apt_steps=steps)
    reconfigure_frontend(ctx.root, ctx.config, ctx.config_path)


def main() -> None:
    run(command, "kestrel-apt")


if __name__ == "__main__":
    main()
