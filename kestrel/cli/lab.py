"""kestrel-lab: the whole cluster on one machine (network namespace, frontend services, qemu nodes)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import click

from kestrel import runner
from kestrel.cli.common import (
    Context,
    Group,
    dry_run_options,
    json_option,
    make_context,
    output_options,
    pass_context,
    print_dry_run,
    print_json,
    print_table,
    run,
)
from kestrel.cli.completion import complete_images
from kestrel.config import CONFIG_PATH, VmKind
from kestrel.errors import KestrelError
from kestrel.frontend import registration
from kestrel.gateway import backends, files
from kestrel.lab import cluster as lab
from kestrel.lab import tree
from kestrel.names import parse_label
from kestrel.nodes import fanout
from kestrel.sysroot import Sysroot

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


def parse_modules(value: str | None) -> list[str]:
    """--modules a,b: module names (checked like the config's), in order, without repeats."""
    found: list[str] = []
    for part in (value or "").split(","):
        name = part.strip()
        if name and name not in found:
            found.append(parse_label(name, "module name (--modules)"))
    return found


def lab_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--root (the lab's tree, default /var/lib/kestrel-lab), -v, -q, --debug."""

    @click.option(
        "--root",
        "root",
        envvar="KESTREL_ROOT",
        default=tree.LAB_ROOT,
        show_default=True,
        type=click.Path(file_okay=False),
        help="The lab's tree (env KESTREL_ROOT).",
    )
    @output_options
    @click.pass_context
    @functools.wraps(f)
    def wrapper(cctx: click.Context, root: str, verbose: int, quiet: bool, debug: bool, **kwargs: Any) -> Any:
        sysroot = tree.check_lab_root(Sysroot(root))
        make_context(cctx, sysroot, sysroot.path(CONFIG_PATH), verbose, quiet, debug)
        return cctx.invoke(f, **kwargs)

    return wrapper


@click.group(
    cls=Group,
    help="A whole Kestrel cluster on this machine: the frontend's services and qemu nodes in a network "
    "namespace, run from their own tree. Start with: kestrel-lab up --nodes 2",
)
@lab_options
def command() -> None:
    pass


@command.command(
    help="Create the network, start dnsmasq, nginx and nfs-ganesha, build the image if missing, "
    "start N nodes and wait until they answer SSH."
)
@click.option(
    "--nodes",
    "count",
    type=click.IntRange(0, 200),
    help="Nodes of --kind on the frontend [default: 2; 0 with --servers].",
)
@click.option(
    "--servers",
    type=click.IntRange(0, 200),
    default=0,
    help="Servers (and a switch host) as namespaces with their own sshd, joined by kestrel-switch.",
)
@click.option(
    "--nodes-per-server",
    "per_server",
    type=click.IntRange(0, 200),
    default=1,
    show_default=True,
    help="qemu nodes started on each server (kestrel-vm start --server).",
)
@click.option(
    "--kind",
    type=click.Choice([k.value for k in VmKind]),
    default=VmKind.QEMU.value,
    show_default=True,
    help="qemu nodes (boot from the network) or container nodes (run the image); the other kind's stay.",
)
@click.option("--image", shell_complete=complete_images, help="Image the nodes boot [default: nodes.default_image].")
@click.option("--prefix", help=f"Prefix of the namespace and bridge names [default: {tree.DEFAULT_PREFIX}].")
@click.option("--rebuild", is_flag=True, help="Run kestrel-images build even if the image exists (updates it).")
@click.option("--timeout", type=click.FloatRange(30), default=900, show_default=True, help="Seconds to wait for SSH.")
@click.option(
    "--modules",
    "modules",
    callback=lambda _c, _p, value: parse_modules(value),
    help="Modules to add to the lab's config, a comma list (kept for later ups), e.g. web,gateway,slurm; "
    "an image built without one of them is rebuilt.",
)
@dry_run_options
@pass_context
def up(
    ctx: Context,
    count: int | None,
    servers: int,
    per_server: int,
    image: str | None,
    prefix: str | None,
    rebuild: bool,
    timeout: float,
    kind: str,
    modules: list[str],
    dry_run: bool,
    diff: bool,
) -> None:
    count = count if count is not None else 0 if servers else 2
    per_server = per_server if servers else 0
    if dry_run:
        lines = lab.describe_up(
            ctx.root, count, image, prefix, rebuild=rebuild, timeout=timeout, diff=diff, modules=modules, kind=kind,
            servers=servers, per_server=per_server,
        )  # fmt: skip
        print_dry_run(lines)
        return
    progress = lab.up(
        ctx.root, count, image, prefix, rebuild=rebuild, timeout=timeout, modules=modules, kind=kind,
        servers=servers, per_server=per_server,
    )  # fmt: skip
    config = ctx.config
    targets = fanout.select_targets(ctx.root, [p.name for p in progress], None) if progress else []
    checks = registration.check(ctx.root, config, targets) if targets else []
    print_table(
        [{"node": c.target.name, "address": c.target.address, "ssh": c.ssh, "home": c.home} for c in checks],
        ["node", "address", "ssh", "home"],
    )
    bad = [c.target.name for c in checks if not c.ok]
    if bad:
        raise KestrelError(f"the lab is up but not healthy on {', '.join(bad)} (kestrel-nodes check shows why)")
    first = progress[0].name if progress else "node01"
    machine = progress[0].vm if progress else "node01"
    logger.info(f"""
The lab is up: {len(progress)} nodes, tree {ctx.root.root}. Next:
  eval "$(kestrel-lab env)"                      # point kestrel-* at the lab
  kestrel-nodes exec -- hostname                 # a command on every node
  kestrel-users add alice                        # a cluster user (home on NFS, own SSH key)
  kestrel-nodes exec --user alice {first} -- mpirun -np {max(2, len(progress))} hostname
  kestrel-lab ssh {first}                            # a shell on a node
  kestrel-vm stop {machine}; kestrel-nodes wake {first}     # power off, Wake-on-LAN
  kestrel-lab down                               # stop everything, remove the namespace""")
    if backends.is_enabled(config):
        url = f"http://{files.listen_addresses(config)[0]}:{config.gateway.port}/"
        logger.info(f"The gateway: ip netns exec {config.network.netns} curl {url}; kestrel-gateway status")


@command.command(help="Stop every process the lab started and remove its namespace (the tree and image stay).")
@dry_run_options
@pass_context
def down(ctx: Context, dry_run: bool, diff: bool) -> None:
    if dry_run:
        print_dry_run(lab.describe_down(ctx.root, diff))
        return
    problems = lab.down(ctx.root)
    if problems:
        raise KestrelError("; ".join(problems))


@command.command(help="What runs: namespace, services, VMs, registered nodes.")
@json_option
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    info = lab.status(ctx.root)
    if as_json:
        print_json(info)
        return
    click.echo(
        f"lab {info['root']}: {'up' if info['up'] else 'down'}"
        + (f", namespace {info['namespace']}, network {info['network']}" if info["up"] else "")
    )
    services = info["services"]
    assert isinstance(services, dict)
    print_table(
        [{"service": k, "pid": v or "-", "state": "running" if v else "stopped"} for k, v in services.items()],
        ["service", "state", "pid"],
    )
    vms = info["vms"]
    assert isinstance(vms, list)
    if vms:
        print_table(vms, ["name", "kind", "state", "server", "pid", "mac"])


@command.command(help='Shell exports pointing kestrel-* at the lab: eval "$(kestrel-lab env)".')
@pass_context
def env(ctx: Context) -> None:
    click.echo(tree.env_text(ctx.root), nl=False)


@command.command(
    help="ssh as root to NODE from inside the lab's namespace (then COMMAND, if given).",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
@click.argument("node")
@click.argument("remote_command", nargs=-1)
@pass_context
def ssh(ctx: Context, node: str, remote_command: tuple[str, ...]) -> None:
    argv = tree.ssh_argv(ctx.root, node, list(remote_command))
    runner.become(argv)


def main() -> None:
    run(command, "kestrel-lab")


if __name__ == "__main__":
    main()
