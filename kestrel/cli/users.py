"""kestrel-users: cluster users with fixed uids, SSH keys and a shared home, on the frontend and every node."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import click

from kestrel.cli import common
from kestrel.cli.common import Context, Group, global_options, json_option, pass_context, print_rows, run
from kestrel.cli.completion import complete_images
from kestrel.errors import InputError
from kestrel.frontend import services
from kestrel.plan import plan_lines
from kestrel.sysroot import Sysroot
from kestrel.users import image_accounts, node_push, rootaccess, user_changes
from kestrel.users.accountfiles import load_users, plan_accounts
from kestrel.users.user_changes import UserChange

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@click.group(cls=Group, invoke_without_command=True, help="Cluster users: same uid everywhere, SSH keys, shared home.")
@global_options
@click.option("--add-to-cluster", "add_to_cluster", metavar="USER", help="KestrelHPC spelling of 'add USER'.")
@click.pass_context
def command(cctx: click.Context, add_to_cluster: str | None) -> None:
    if add_to_cluster:
        _add(cctx.obj, add_to_cluster, None, None, False, push=True)
    elif cctx.invoked_subcommand is None:
        click.echo(cctx.get_help())


def _add(
    ctx: Context,
    name: str,
    uid: int | None,
    shell: str | None,
    admin: bool,
    push: bool,
    dry_run: bool = False,
    diff: bool = False,
) -> None:
    _carry_out(
        ctx,
        lambda: user_changes.plan_add(
            ctx.root, ctx.config, name, uid, shell, admin, root_key=push and bool(node_push.running_nodes(ctx.root))
        ),
        push,
        dry_run,
        diff,
        ("Created cluster user {name} (uid {uid})", "Would add cluster user {name} (uid {uid})"),
    )


def _carry_out(
    ctx: Context,
    plan: Callable[[], UserChange],
    push: bool,
    dry_run: bool,
    diff: bool,
    says: tuple[str, str] | None = None,
) -> None:
    """Under the lock, PLAN the change, then carry out the frontend's plan and each image's (so a reboot keeps
    the change) through the one executor; then push to the running nodes. --dry-run prints the plans and the
    nodes a push would reach, and does nothing; --diff prints them with diffs, then does it.
    SAYS: what is said of the user when done, and for a dry run."""
    with contextlib.nullcontext() if dry_run else ctx.root.lock():  # a dry run writes nothing, not even the lock
        change = plan()
        user = change.user
        done, would = [s.format(name=user.name, uid=user.uid) for s in says] if says and user else ["", ""]
        trees = [(ctx.root, change.frontend), *((i.tree, i.plan) for i in change.images)]
        if dry_run or diff:
            common.print_dry_run(
                [
                    *([would] if would and dry_run else []),
                    *(line for root, plan in trees for line in plan_lines(root, plan, diff)),
                    *(node_push.describe_push(ctx.root) if push and dry_run else []),
                ]
            )
        if not dry_run:
            services.apply(ctx.root, change.frontend)
            if done:
                logger.info(done)
            for image in change.images:
                if not image.plan.is_empty:
                    services.apply(image.tree, image.plan)
                    logger.info(f"Updated the cluster users of image {image.name}")
    if push and not dry_run:
        node_push.push_to_nodes(ctx.root, ctx.config)
    rootaccess.warn_root_access(ctx.root, ctx.config)


@command.command(help="Add a cluster user: account, home, key pair, authorized_keys; images and nodes follow.")
@click.argument("name")
@click.option("--uid", type=int, help="Fixed uid (inside users.uid_range); default: the first free one.")
@click.option("--shell", help="Login shell [default: users.shell].")
@click.option("--admin", is_flag=True, help="Member of users.admin_group where that group exists.")
@click.option("--no-push", is_flag=True, help="Do not update running nodes now.")
@common.dry_run_options
@pass_context
def add(
    ctx: Context, name: str, uid: int | None, shell: str | None, admin: bool, no_push: bool, dry_run: bool, diff: bool
) -> None:
    _add(ctx, name, uid, shell, admin, not no_push, dry_run, diff)


@command.command(help="Remove a cluster user everywhere; its home stays unless --delete-home.")
@click.argument("name")
@click.option("--delete-home", is_flag=True, help="Delete the home folder and its keys too.")
@click.option("--keep-home", is_flag=True, hidden=True, help="The default (kept for older scripts).")
@click.option("--no-push", is_flag=True, help="Do not update running nodes now.")
@common.dry_run_options
@pass_context
def remove(
    ctx: Context, name: str, delete_home: bool, keep_home: bool, no_push: bool, dry_run: bool, diff: bool
) -> None:
    if delete_home and keep_home:
        raise InputError("--delete-home and --keep-home: give one of them")
    _carry_out(
        ctx,
        lambda: user_changes.plan_remove(ctx.root, ctx.config, name, keep_home=not delete_home),
        not no_push,
        dry_run,
        diff,
        ("Removed cluster user {name}", "Would remove cluster user {name}"),
    )


@command.command("list", help="The cluster users.")
@json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    rows = [
        {
            "name": u.name,
            "uid": u.uid,
            "gid": u.gid,
            "shell": u.shell,
            "admin": u.admin,
            "home": f"{ctx.config.nfs.home.rstrip('/')}/{u.name}",
        }
        for u in load_users(ctx.root)
    ]
    print_rows(rows, ["name", "uid", "shell", "admin", "home"], as_json)


@command.command(help="Rewrite known_hosts and the users of every image and running node (after new nodes).")
@click.option("--no-push", is_flag=True, help="Do not update running nodes now.")
@common.dry_run_options
@pass_context
def sync(ctx: Context, no_push: bool, dry_run: bool, diff: bool) -> None:
    _carry_out(ctx, lambda: user_changes.plan_sync(ctx.root, ctx.config), not no_push, dry_run, diff)


@command.command("apply-image", help="Give one image root the cluster users (the core_users configure script).")
@click.argument("image_root", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--image",
    "name",
    shell_complete=complete_images,
    help="The image's name: its own host keys are trusted for its nodes.",
)
@pass_context
def apply_image(ctx: Context, image_root: str, name: str | None) -> None:
    tree = Sysroot(Path(image_root))
    with ctx.root.lock():
        users = load_users(ctx.root)
        plan, known_hosts = image_accounts.plan_image_build(ctx.root, ctx.config, tree, users, name)
        services.apply(tree, plan)
        # the frontend trusts the image's own keys too (its known_hosts; the account files are its own)
        services.apply(ctx.root, plan_accounts(ctx.root, users, ctx.config, known_hosts, accounts=False))


@command.command(help="Check that no node or cluster-user key opens the frontend's root account.")
@pass_context
def check(ctx: Context) -> None:
    rootaccess.check_root_access(ctx.root, ctx.config)
    logger.info("No node or cluster-user key is authorised for the frontend's root")


def main() -> None:
    run(command, "kestrel-users")


if __name__ == "__main__":
    main()
