"""kestrel-images: build, list, remove, roll back, explain and enter node images."""

from __future__ import annotations

import logging

import click

from kestrel.cli.common import (
    Context,
    dry_run_options,
    global_options,
    pass_context,
    print_dry_run,
    print_json,
    print_table,
    run,
)
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.images import build, definitions, scripts, store
from kestrel.plan import Plan, describe_plan, plan_lines

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@click.group(help="Build and manage node images (root file systems the nodes boot from over NFS).")
@global_options
def cli() -> None:
    pass


@cli.command("build", help="Build image NAME in phases and publish it; the previous version stays kept.")
@click.argument("name")
@click.option("--force", is_flag=True, help="Rebuild from the base instead of updating the current version.")
@click.option("--no-cache", is_flag=True, help="Bootstrap a fresh base (replaces the cached one).")
@click.option("--dry-run", is_flag=True, help="Print what the build would do; change nothing.")
@pass_context
def build_command(ctx: Context, name: str, force: bool, no_cache: bool, dry_run: bool) -> None:
    if dry_run:
        print_dry_run([*build.describe_build(ctx.root, ctx.config, name, force=force or no_cache,
                                             use_cache=not no_cache), follows(name)])
        return
    build.build_image(ctx.root, ctx.config, ctx.config_path, name, force=force or no_cache,
                      use_cache=not no_cache)
    _replan(ctx)


@cli.command("list", help="Published images: version, root, size, built, modules.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_command(ctx: Context, as_json: bool) -> None:
    rows = store.list_images(ctx.root)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["size"] = store.human_size(r["size"])
        r["modules"] = ",".join(r["modules"])
        r["built"] = (r["built"] or "-")[:19]
        r["nodes on"] = " ".join(f"{v}:{','.join(n)}" for v, n in r["used_by"].items()) or "-"
    print_table(rows, ["name", "version", "size", "built", "modules", "nodes on", "root"])


@cli.command("remove", help="Delete image NAME: every version, its boot files, its NFS export.")
@click.argument("name")
@dry_run_options
@pass_context
def remove_command(ctx: Context, name: str, dry_run: bool, diff: bool) -> None:
    if dry_run:
        print_dry_run([*plan_lines(ctx.root, store.plan_remove_image(ctx.root, name), diff),
                       f"Would replan the frontend: its boot files and NFS exports of {name} go"])
        return
    _print_diff(ctx, store.remove_image(ctx.root, name), diff)
    logger.info(f"Removed image {name}")
    _replan(ctx)


@cli.command("rollback", help="Serve the previous version of NAME again.")
@click.argument("name")
@dry_run_options
@pass_context
def rollback_command(ctx: Context, name: str, dry_run: bool, diff: bool) -> None:
    if dry_run:
        plan, manifest = store.plan_rollback(ctx.root, name)
        print_dry_run([*plan_lines(ctx.root, plan, diff), follows(name, f"version {manifest['version']}")])
        return
    plan, manifest = store.rollback(ctx.root, name)
    _print_diff(ctx, plan, diff)
    logger.info(f"Rolled {name} back to version {manifest['version']}")
    _replan(ctx)


@cli.command("shell", help="A shell in a new version of NAME: exit 0 publishes it (after configure), "
                            "exit 1 discards it.")
@click.argument("name")
@pass_context
def shell_command(ctx: Context, name: str) -> None:
    build.shell_image(ctx.root, ctx.config, ctx.config_path, definitions.check_image_name(name))
    _replan(ctx)


@cli.command("explain", help="Each phase's effective scripts for NAME: shipped, overridden or added.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def explain_command(ctx: Context, name: str, as_json: bool) -> None:
    definition = definitions.load_definition(ctx.root, name)
    modules = definitions.image_modules(definition, ctx.config.modules)
    now = store.current(ctx.root, name)
    state = scripts.load_state(ctx.root.path(now["root"]) / scripts.IMAGE_STATE.lstrip("/")) if now else {}
    rows = scripts.explain(ctx.root, scripts.Side.NODE, modules, state)
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["phase", "script", "origin", "where", "status", "path"])


def follows(name: str, version: str = "the new version") -> str:
    """The dry run's last line: the frontend is replanned for VERSION of image NAME."""
    return f"Would point the frontend's boot files and NFS exports at {version} of {name}"


def _print_diff(ctx: Context, plan: Plan, diff: bool) -> None:
    """--diff without --dry-run: what was done, with the manifests' diffs."""
    if diff:
        click.echo(describe_plan(ctx.root, plan, diff=True), nl=False)


def _replan(ctx: Context) -> None:
    """The frontend follows the published versions (NFS exports, boot files)."""
    reconfigure_frontend(ctx.root, ctx.config, ctx.config_path)


def main() -> None:
    run(cli, "kestrel-images")


if __name__ == "__main__":
    main()
