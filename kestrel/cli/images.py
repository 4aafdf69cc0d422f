"""kestrel-images: build, list, remove, roll back, explain and enter node images."""

from __future__ import annotations

import logging
from collections.abc import Callable

import click

from kestrel.cli.common import (
    Context,
    Group,
    dry_run_options,
    global_options,
    json_option,
    pass_context,
    print_dry_run,
    print_rows,
    run,
)
from kestrel.cli.completion import complete_images
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.images import build, definitions, listing, recorded, scripts, store
from kestrel.plan import Plan, describe_plan, plan_lines

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@click.group(cls=Group, help="Build and manage node images (root file systems the nodes boot from over NFS).")
@global_options
def cli() -> None:
    pass


@cli.command("build", help="Build image NAME in phases and publish it; the previous version stays kept.")
@click.argument("name", shell_complete=complete_images)
@click.option("--force", is_flag=True, help="Rebuild from the base instead of updating the current version.")
@click.option("--no-cache", is_flag=True, help="Bootstrap a fresh base (replaces the cached one).")
@click.option("--dry-run", is_flag=True, help="Print what the build would do; change nothing.")
@pass_context
def build_command(ctx: Context, name: str, force: bool, no_cache: bool, dry_run: bool) -> None:
    if dry_run:
        print_dry_run(
            [
                *build.describe_build(ctx.root, ctx.config, name, force=force or no_cache, use_cache=not no_cache),
                follows(name),
            ]
        )
        return
    build.build_image(ctx.root, ctx.config, name, force=force or no_cache, use_cache=not no_cache)
    _replan(ctx)


@cli.command("list", help="Published images: version, root, size, built, modules.")
@click.option("--all", "show_all", is_flag=True, help="Every kept version, and defined images not built yet.")
@json_option
@pass_context
def list_command(ctx: Context, show_all: bool, as_json: bool) -> None:
    if show_all:
        print_rows(
            listing.list_versions(ctx.root),
            ["name", "version", "state", "size", "built", "nodes on", "logs"],
            as_json,
            lambda r: (
                r
                | {
                    "version": r["version"] or "-",
                    "size": listing.human_size(r["size"]),
                    "built": (r["built"] or "-")[:19],
                    "nodes on": ",".join(r["nodes"]) or "-",
                    "logs": r["logs"] or r.get("definition") or "-",
                }
            ),
        )
        return
    print_rows(
        listing.list_images(ctx.root),
        ["name", "version", "size", "built", "modules", "nodes on", "root"],
        as_json,
        lambda r: (
            r
            | {
                "size": listing.human_size(r["size"]),
                "modules": ",".join(r["modules"]),
                "built": (r["built"] or "-")[:19],
                "nodes on": " ".join(f"{v}:{','.join(n)}" for v, n in r["used_by"].items()) or "-",
            }
        ),
    )


@cli.command(
    "remove", help="Delete image NAME: every version, its boot files, its NFS export. Refused while up nodes run on it."
)
@click.argument("name", shell_complete=complete_images)
@click.option("--force", is_flag=True, help="Remove it even under up nodes (they lose their root; named).")
@dry_run_options
@pass_context
def remove_command(ctx: Context, name: str, force: bool, dry_run: bool, diff: bool) -> None:
    _change(
        ctx,
        lambda: store.plan_remove_image(ctx.root, name, force),
        dry_run,
        diff,
        would=f"Would replan the frontend: its boot files and NFS exports of {name} go",
        done=f"Removed image {name}",
    )


@cli.command("rollback", help="Serve the previous version of NAME again.")
@click.argument("name", shell_complete=complete_images)
@dry_run_options
@pass_context
def rollback_command(ctx: Context, name: str, dry_run: bool, diff: bool) -> None:
    version = store.rollback_target(ctx.root, name)["version"]
    _change(
        ctx,
        lambda: store.plan_rollback(ctx.root, name),
        dry_run,
        diff,
        would=follows(name, f"version {version}"),
        done=f"Rolled {name} back to version {version}",
    )


@cli.command(
    "shell", help="A shell in a new version of NAME: exit 0 publishes it (after configure), exit 1 discards it."
)
@click.argument("name", shell_complete=complete_images)
@pass_context
def shell_command(ctx: Context, name: str) -> None:
    build.shell_image(ctx.root, ctx.config, definitions.check_image_name(name))
    _replan(ctx)


@cli.command(
    "explain",
    help="Each phase's effective scripts for NAME: shipped, overridden or added; and the packages kestrel-apt "
    "recorded (every build installs or removes them again).",
)
@click.argument("name", shell_complete=complete_images)
@json_option
@pass_context
def explain_command(ctx: Context, name: str, as_json: bool) -> None:
    definition = definitions.load_definition(ctx.root, name)
    modules = definitions.image_modules(definition, ctx.config.modules)
    now = store.current(ctx.root, name)
    state = scripts.load_state(ctx.root.path(now["root"]) / scripts.IMAGE_STATE.lstrip("/")) if now else {}
    # where the image's modules are set: its definition when it lists them, else kestrel.yaml
    where = definitions.definition_path(ctx.root, name) if definition.modules is not None else ctx.config_path
    rows = scripts.explain(ctx.root, scripts.Side.NODE, modules, state)
    rows += recorded.explain_rows(ctx.root, name, ctx.root.path(now["root"]) if now else None)
    for row in rows:
        if row["status"] == "module off":
            row["enable"] = f"{where}: modules: [{', '.join([*modules, row['module']])}]"
    print_rows(rows, ["phase", "script", "origin", "where", "status", "path"], as_json)
    for module in sorted({r["module"] for r in rows if "enable" in r}):
        logger.info(f"Module {module} is off; to enable it, set in {where}: modules: [{', '.join([*modules, module])}]")


def follows(name: str, version: str = "the new version") -> str:
    """The dry run's last line: the frontend is replanned for VERSION of image NAME."""
    return f"Would point the frontend's boot files and NFS exports at {version} of {name}"


def _change(ctx: Context, plan_it: Callable[[], Plan], dry_run: bool, diff: bool, would: str, done: str) -> None:
    """A change of the published images: --dry-run prints its plan and WOULD (what follows on the frontend);
    otherwise it is carried out (--diff shows it, with the manifests' diffs), DONE said, the frontend replanned."""
    if dry_run:
        print_dry_run([*plan_lines(ctx.root, plan_it(), diff), would])
        return
    plan = store.apply_locked(ctx.root, plan_it)
    if diff:
        click.echo(describe_plan(ctx.root, plan, diff=True), nl=False)
    logger.info(done)
    _replan(ctx)


def _replan(ctx: Context) -> None:
    """The frontend follows the published versions (NFS exports, boot files)."""
    reconfigure_frontend(ctx.root, ctx.config, ctx.config_path)


def main() -> None:
    run(cli, "kestrel-images")


if __name__ == "__main__":
    main()
