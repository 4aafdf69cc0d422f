"""kestrel-users: cluster users with fixed uids, SSH keys and a shared home, on the frontend and every node."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from kestrel.cli.common import Context, global_options, pass_context, print_json, print_table, run
from kestrel.users import accounts, rootaccess

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@click.group(invoke_without_command=True, help="Cluster users: same uid everywhere, SSH keys, shared home.")
@global_options
@click.option("--add-to-cluster", "add_to_cluster", metavar="USER", help="KestrelHPC spelling of 'add USER'.")
@click.pass_context
def command(cctx: click.Context, add_to_cluster: str | None) -> None:
    if add_to_cluster:
        _add(cctx.obj, add_to_cluster, None, None, False, push=True)
    elif cctx.invoked_subcommand is None:
        click.echo(cctx.get_help())


def _add(ctx: Context, name: str, uid: int | None, shell: str | None, admin: bool, push: bool) -> None:
    accounts.add_user(ctx.root, ctx.config, name, uid, shell, admin)
    _spread(ctx, push)


def _spread(ctx: Context, push: bool) -> None:
    """Images get the change now (so a reboot keeps it), running nodes by push."""
    accounts.apply_to_images(ctx.root, ctx.config)
    if push:
        accounts.push_to_nodes(ctx.root, ctx.config)
    rootaccess.enforce(ctx.root, ctx.config)


@command.command(help="Add a cluster user: account, home, key pair, authorized_keys; images and nodes follow.")
@click.argument("name")
@click.option("--uid", type=int, help="Fixed uid (inside users.uid_range); default: the first free one.")
@click.option("--shell", help="Login shell [default: users.shell].")
@click.option("--admin", is_flag=True, help="Member of users.admin_group where that group exists.")
@click.option("--no-push", is_flag=True, help="Do not update running nodes now.")
@pass_context
def add(ctx: Context, name: str, uid: int | None, shell: str | None, admin: bool, no_push: bool) -> None:
    _add(ctx, name, uid, shell, admin, push=not no_push)


@command.command(help="Remove a cluster user everywhere; its home goes too unless --keep-home.")
@click.argument("name")
@click.option("--keep-home", is_flag=True, help="Keep the home folder and its keys.")
@click.option("--no-push", is_flag=True, help="Do not update running nodes now.")
@pass_context
def remove(ctx: Context, name: str, keep_home: bool, no_push: bool) -> None:
    accounts.remove_user(ctx.root, ctx.config, name, keep_home)
    _spread(ctx, push=not no_push)


@command.command("list", help="The cluster users.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    rows = [{"name": u.name, "uid": u.uid, "gid": u.gid, "shell": u.shell, "admin": u.admin,
             "home": f"{ctx.config.nfs.home.rstrip('/')}/{u.name}"} for u in accounts.load_users(ctx.root)]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["name", "uid", "shell", "admin", "home"])


@command.command(help="Rewrite known_hosts and the users of every image and running node (after new nodes).")
@click.option("--no-push", is_flag=True, help="Do not update running nodes now.")
@pass_context
def sync(ctx: Context, no_push: bool) -> None:
    with ctx.root.lock():
        accounts.sync_frontend(ctx.root, ctx.config)
    _spread(ctx, push=not no_push)


@command.command("apply-image", help="Give one image root the cluster users (the core_users configure script).")
@click.argument("image_root", type=click.Path(file_okay=False, exists=True))
@click.option("--image", "name", help="The image's name: its own host keys are trusted for its nodes.")
@pass_context
def apply_image(ctx: Context, image_root: str, name: str | None) -> None:
    for path in accounts.apply_to_image(ctx.root, ctx.config, Path(image_root), name):
        logger.info(f"Wrote {Path(image_root)}{path}")


@command.command(help="Check that no node or cluster-user key opens the frontend's root account.")
@pass_context
def check(ctx: Context) -> None:
    rootaccess.check_root_access(ctx.root, ctx.config)
    logger.info("No node or cluster-user key is authorised for the frontend's root")


def main() -> None:
    run(command, "kestrel-users")


if __name__ == "__main__":
    main()
