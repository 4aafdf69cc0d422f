"""kestrel-nodes: the registry (register, list, add, remove, set), hostfiles, lease events and their registrar,
exec, check, wake; status, monitor, poweroff, reboot and rollout come from cli.operations."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from kestrel.cli import common, operations
from kestrel.cli.common import Context, Group, global_options, json_option, pass_context, print_rows, run
from kestrel.cli.completion import complete_groups, complete_images, complete_nodes, complete_users
from kestrel.errors import InputError, KestrelError
from kestrel.frontend import firewall, hostkeys, node_changes, registrar, registration
from kestrel.nodes import fanout, hostfiles, keeper, pending, registry, wake
from kestrel.nodes import state as nodestate
from kestrel.plan import Plan, plan_lines
from kestrel.slurm import conf as slurm_conf
from kestrel.slurm import join as slurm_join
from kestrel.status import node_facts, page, report
from kestrel.users import homes
from kestrel.vocabulary import iso_utc

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__

_VALUED = {"--root", "--config"}
# KestrelHPC's spellings, rewritten by kestrel-nodes into the subcommand below.
ALIASES = {"--wake-node": ["wake"], "--wake-mac": ["wake", "--mac"], "--wake-group": ["wake", "--group"]}


class NodesGroup(Group):
    """KestrelHPC's spelling `kestrel-nodes --register [GROUP] [IMAGE]` is the `register` subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        i = 0
        while i < len(args) and args[i] != "--":
            if args[i] == "--register":
                args[i] = "register"
                break
            if args[i] in ALIASES:
                args[i : i + 1] = ALIASES[args[i]]
                break
            i += 2 if args[i] in _VALUED else 1
        return super().parse_args(ctx, args)


@click.group(
    cls=NodesGroup,
    help="Cluster nodes: register them from DHCP leases, list and change them, "
    "write MPI/Slurm hostfiles. `--register [GROUP] [IMAGE]` is KestrelHPC's spelling of `register`.",
)
@global_options
def command() -> None:
    pass


@command.command("register", help="Register every node found in the DHCP leases that is not registered yet.")
@click.argument("group_arg", metavar="[GROUP]", required=False, shell_complete=complete_groups)
@click.argument("image_arg", metavar="[IMAGE]", required=False, shell_complete=complete_images)
@click.option(
    "--leases",
    "leases_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Leases file [default: network.leases_file of the config].",
)
@click.option("--group", shell_complete=complete_groups, help="Group of the new nodes [default: nodes.default_group].")
@click.option("--image", shell_complete=complete_images, help="Image of the new nodes [default: nodes.default_image].")
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Register only nodes that accept SSH with the frontend's key (nodes.ssh_key); "
    "--dry-run visits them too (read only).",
)
@common.dry_run_options
@pass_context
def register_command(
    ctx: Context,
    group_arg: str | None,
    image_arg: str | None,
    leases_file: Path | None,
    group: str | None,
    image: str | None,
    verify: bool,
    dry_run: bool,
    diff: bool,
) -> None:
    added, plan = registration.register(
        ctx.root,
        ctx.config,
        leases_file=leases_file,
        group=_one_of(group_arg, group, "GROUP", "--group"),
        image=_one_of(image_arg, image, "IMAGE", "--image"),
        verify=verify,
        dry_run=dry_run,
    )
    _report(ctx, plan, dry_run, diff, [f"Would register {n.name} ({n.mac}, {n.ip})" for n in added])


def _report(ctx: Context, plan: Plan, dry_run: bool, diff: bool, would: Sequence[str] = ()) -> None:
    """--dry-run: what would be done (WOULD, then the plan); --diff: the plan with its diffs, done already."""
    if dry_run or diff:
        common.print_dry_run([*(would if dry_run else []), *plan_lines(ctx.root, plan, diff)])


def _one_of(positional: str | None, option: str | None, arg: str, flag: str) -> str | None:
    if positional and option and positional != option:
        raise InputError(f"{arg} {positional!r} and {flag} {option!r} disagree; give one")
    return positional or option


NODES = click.argument("node_names", metavar="[NODES]...", nargs=-1, shell_complete=complete_nodes)
GROUP = click.option(
    "--group", shell_complete=complete_groups, help="Every node of this group (NODES may also say @GROUP)."
)


@command.command(
    "list",
    help="The registered nodes with their state and facts; NODES (names, host lists such as node[01-04,07], "
    "@group) or --group choose some.",
)
@NODES
@GROUP
@json_option
@pass_context
def list_command(ctx: Context, node_names: tuple[str, ...], group: str | None, as_json: bool) -> None:
    states = nodestate.load_states(ctx.root)
    chosen = registry.select_nodes(registry.load_registry(ctx.root), node_names, group)
    rows = [node_facts.node_row(n, states) for n in sorted(chosen, key=registry.natural_key)]
    print_rows(
        rows,
        ["name", "mac", "ip", "image", "group", "state", "cpus", "memory"],
        as_json,
        lambda r: {k: "-" if v is None else v for k, v in r.items()} | {"memory": node_facts.memory_text(r)},
    )


@command.command("show", help="Everything known about node NAME: registry, state, facts, boot stage, image version.")
@click.argument("name", shell_complete=complete_nodes)
@json_option
@pass_context
def show_command(ctx: Context, name: str, as_json: bool) -> None:
    facts = node_facts.show_node(ctx.root, ctx.config, name)
    if as_json:
        common.print_json(facts)
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            click.echo(f"{key.ljust(width)}  {node_facts.value_text(value)}")


@command.command("add", help="Register one node by hand; the name and address are allocated if not given.")
@click.option("--mac", required=True, help="Its MAC (aa:bb:.., aa-bb-.. or aabb.ccdd.eeff).")
@click.option("--name", help="Its host name [default: the next free nodes.name_pattern].")
@click.option("--ip", help="Its address [default: the next free one of network.static_pool or the network].")
@click.option("--image", shell_complete=complete_images, help="[default: nodes.default_image]")
@click.option("--group", shell_complete=complete_groups, help="[default: nodes.default_group]")
@common.dry_run_options
@pass_context
def add_command(
    ctx: Context,
    mac: str,
    name: str | None,
    ip: str | None,
    image: str | None,
    group: str | None,
    dry_run: bool,
    diff: bool,
) -> None:
    node, plan = node_changes.add(
        ctx.root, ctx.config, mac, dry_run=dry_run, name=name, ip=ip, image=image, group=group
    )
    _report(ctx, plan, dry_run, diff, [f"Would add {node.name} ({node.mac}, {node.ip})"])
    if not dry_run:
        logger.info(f"Added {node.name} ({node.mac}, {node.ip})")


@command.command("remove", help="Forget nodes: names, host lists such as node[01-04,07], or @group.")
@click.argument("node_names", metavar="NODES...", nargs=-1, required=True, shell_complete=complete_nodes)
@common.dry_run_options
@pass_context
def remove_command(ctx: Context, node_names: tuple[str, ...], dry_run: bool, diff: bool) -> None:
    gone = [n.name for n in registry.select_nodes(registry.load_registry(ctx.root), node_names)]
    plan = node_changes.remove(ctx.root, ctx.config, list(node_names), dry_run=dry_run)
    _report(ctx, plan, dry_run, diff, [f"Would remove {name}" for name in gone])
    if not dry_run:
        for name in gone:
            logger.info(f"Removed {name}")


@command.command(
    "set",
    help="Change the image or group of NODES (names, host lists such as node[01-04,07], @group), or one node's "
    "address or name.",
)
@click.argument("node_names", metavar="NODES...", nargs=-1, required=True, shell_complete=complete_nodes)
@click.option("--image", shell_complete=complete_images)
@click.option("--group", shell_complete=complete_groups)
@click.option("--ip")
@click.option("--name", "new_name", help="A new host name.")
@common.dry_run_options
@pass_context
def set_command(
    ctx: Context,
    node_names: tuple[str, ...],
    image: str | None,
    group: str | None,
    ip: str | None,
    new_name: str | None,
    dry_run: bool,
    diff: bool,
) -> None:
    if image is None and group is None and ip is None and new_name is None:
        raise InputError("set: give at least one of --image, --group, --ip, --name")
    chosen = [n.name for n in registry.select_nodes(registry.load_registry(ctx.root), node_names)]
    plan = node_changes.set_fields(
        ctx.root, ctx.config, list(node_names), dry_run=dry_run, image=image, group=group, ip=ip, new_name=new_name
    )
    _report(ctx, plan, dry_run, diff, [f"Would change {name}" for name in chosen])


@command.command("pending", help="Machines that took a lease and wait for approval (nodes.auto_register: approve).")
@json_option
@pass_context
def pending_command(ctx: Context, as_json: bool) -> None:
    machines = sorted(pending.load_pending(ctx.root).values(), key=lambda m: (m.first_seen, m.mac))
    rows = [
        {"mac": m.mac, "ip": str(m.ip), "first_seen": iso_utc(m.first_seen), "last_seen": iso_utc(m.last_seen)}
        for m in machines
    ]
    print_rows(rows, ["mac", "ip", "first_seen", "last_seen"], as_json, lambda r: r)


@command.command(
    "approve",
    help="Register pending machines (by MAC, or all): each becomes a node at its leased address "
    "(or the next of network.static_pool) and may mount NFS at once.",
)
@click.argument("macs", metavar="MAC...|all", nargs=-1, required=True)
@click.option("--name", help="Its host name (one MAC only) [default: the next free nodes.name_pattern].")
@click.option("--group", shell_complete=complete_groups, help="[default: nodes.default_group]")
@click.option("--image", shell_complete=complete_images, help="[default: nodes.default_image]")
@common.dry_run_options
@pass_context
def approve_command(
    ctx: Context,
    macs: tuple[str, ...],
    name: str | None,
    group: str | None,
    image: str | None,
    dry_run: bool,
    diff: bool,
) -> None:
    if "all" in macs and len(macs) > 1:
        raise InputError("approve: give MACs or all, not both")
    made, plan = node_changes.approve(
        ctx.root, ctx.config, list(macs), dry_run=dry_run, name=name, group=group, image=image
    )
    _report(ctx, plan, dry_run, diff, [f"Would register {n.name} ({n.mac}, {n.ip})" for n in made])
    if not dry_run:
        for n in made:
            logger.info(f"Registered {n.name} ({n.mac}, {n.ip})")


@command.command("reject", help="Forget pending machines (one that asks for a lease again is pending again).")
@click.argument("macs", metavar="MAC...|all", nargs=-1, required=True)
@common.dry_run_options
@pass_context
def reject_command(ctx: Context, macs: tuple[str, ...], dry_run: bool, diff: bool) -> None:
    if "all" in macs and len(macs) > 1:
        raise InputError("reject: give MACs or all, not both")
    gone, plan = node_changes.reject(ctx.root, ctx.config, list(macs), dry_run=dry_run)
    _report(ctx, plan, dry_run, diff, [f"Would forget {mac}" for mac in gone])
    if not dry_run:
        for mac in gone:
            logger.info(f"Rejected {mac}")


@command.command("hostfile", help="Print a hostfile of the nodes that are up (--all: every registered node).")
@click.option(
    "--format", "fmt", type=click.Choice([f.value for f in hostfiles.Format]), default="openmpi", show_default=True
)
@click.option("--group", shell_complete=complete_groups, help="Only this group.")
@click.option("--all", "everything", is_flag=True, help="Also nodes that are down or never seen.")
@pass_context
def hostfile_command(ctx: Context, fmt: str, group: str | None, everything: bool) -> None:
    entries = hostfiles.select(registry.load_registry(ctx.root), nodestate.load_states(ctx.root), group, everything)
    click.echo(hostfiles.render_hostfile(ctx.root, ctx.config, hostfiles.Format(fmt), entries), nl=False)


@command.command(
    "lease-event", hidden=True, help="Apply one lease event at once: add|old|del|arp-add|arp-del MAC IP [NAME]."
)
@click.argument("action")
@click.argument("mac")
@click.argument("ip")
@click.argument("hostname", required=False)
@pass_context
def lease_event_command(ctx: Context, action: str, mac: str, ip: str, hostname: str | None) -> None:
    # The client's HOSTNAME is never used: names come from nodes.name_pattern.
    node = registration.lease_event(ctx.root, ctx.config, action, mac, ip)
    # A lease (new, or renewed by a node that boots again) is a node starting: it joins Slurm once it answers SSH.
    if node is not None and action in ("add", "old") and slurm_conf.enabled(ctx.config):
        slurm_join.spawn_join(ctx.root, ctx.config_path, node.name)


@command.command(
    "registrar",
    help="Apply the lease events dnsmasq's hook queues, in batches, until stopped "
    "(run beside dnsmasq: by kestrel-lab, or the kestrel-registrar unit). --once: apply what is queued and exit.",
)
@click.option("--once", is_flag=True, help="Apply the queued events, then exit.")
@pass_context
def registrar_command(ctx: Context, once: bool) -> None:
    if once:
        registrar.drain(ctx.root, ctx.config_path)
    else:
        registrar.serve(ctx.root, ctx.config_path)


@command.command(
    "keeper",
    hidden=True,
    help="Keep one SSH connection per node open for Kestrel's commands (exec starts it; it ends when idle).",
)
@click.option("--idle", type=click.FloatRange(1), default=keeper.IDLE, show_default=True, help="Seconds idle.")
@pass_context
def keeper_command(ctx: Context, idle: float) -> None:
    keeper.serve(ctx.root, idle)


class _CommandAfterDashes(click.Command):
    """`exec [NODES...] -- CMD...`: what follows the first `--` is the remote command, never node names."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            args, ctx.meta["remote_command"] = args[:i], args[i + 1 :]
        else:
            ctx.meta["remote_command"] = []
        return super().parse_args(ctx, args)


@command.command(
    "exec",
    cls=_CommandAfterDashes,
    help="Run a command on many nodes in parallel; output lines are prefixed by the node's name. "
    "Exits 1 if it failed anywhere, and says where.",
)
@NODES
@GROUP
@click.option(
    "--user",
    shell_complete=complete_users,
    default="root",
    show_default=True,
    help="As this cluster user, with its own key.",
)
@click.option("--parallel", type=click.IntRange(1, 256), default=16, show_default=True, help="Nodes at a time.")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 600), help="[default: nodes.ssh_timeout]")
@click.option(
    "--timeout",
    "command_timeout",
    type=click.FloatRange(0.1),
    default=600,
    show_default=True,
    help="Seconds a command may run.",
)
@pass_context
def exec_command(
    ctx: Context,
    node_names: tuple[str, ...],
    group: str | None,
    user: str,
    parallel: int,
    connect_timeout: float | None,
    command_timeout: float,
) -> None:
    argv = click.get_current_context().meta["remote_command"]
    targets = fanout.select_targets(ctx.root, list(node_names), group)
    key = None if user == "root" else homes.private_key(ctx.root, ctx.config, user)
    results = fanout.exec_on(
        ctx.root,
        ctx.config,
        targets,
        " ".join(argv),
        user=user,
        key=key,
        parallel=parallel,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    )
    for t, r in zip(targets, results, strict=True):
        for line in r.stdout.splitlines():
            click.echo(f"{t.name}: {line}")
        for line in r.stderr.splitlines():
            click.echo(f"{t.name}: {line}", err=True)
    failed = [(t, r) for t, r in zip(targets, results, strict=True) if not r.ok]
    if failed:
        where = ", ".join(f"{t.name} ({r.why()})" for t, r in failed)
        raise KestrelError(f"failed on {len(failed)} of {len(results)} nodes: {where}")
    logger.debug(f"Ran on {len(results)} nodes")


@command.command(
    "check",
    help="Per node: ping (ICMP), SSH with the frontend's key, NFS home mounted, and the time "
    "it took. Nodes that answer SSH are marked up, the others down.",
)
@NODES
@GROUP
@click.option("--parallel", type=click.IntRange(1, 256), default=16, show_default=True, help="Nodes at a time.")
@json_option
@pass_context
def check_command(ctx: Context, node_names: tuple[str, ...], group: str | None, parallel: int, as_json: bool) -> None:
    targets = fanout.select_targets(ctx.root, list(node_names), group)
    checks = registration.check(ctx.root, ctx.config, targets, parallel)
    rows: list[dict[str, Any]] = [
        {
            "name": c.target.name,
            "address": c.target.address,
            "ping": c.ping,
            "ssh": c.ssh,
            "home": c.home,
            "seconds": round(c.seconds, 2),
            "ok": c.ok,
        }
        for c in checks
    ]
    columns = ["name", "address", "ping", "ssh", "home", "time"]
    live = firewall.read_live(ctx.root, ctx.config) if firewall.enabled(ctx.config) else None
    if live is not None:  # the firewall module: what its table accepted from each node and refused
        pairs = {n.name: (n.mac, n.ip) for n in registry.load_registry(ctx.root)}
        for row in rows:
            if row["name"] in pairs:
                row["firewall"] = report.firewall_json(firewall.counts(live, *pairs[row["name"]]))
        columns.append("firewall")
    print_rows(
        rows,
        columns,
        as_json,
        lambda r: (
            r
            | {"time": f"{r['seconds']:.2f} s"}
            | ({"firewall": _firewall_text(r["firewall"])} if "firewall" in r else {"firewall": "-"})
        ),
    )
    bad = [c for c in checks if not c.ok]
    if bad:
        raise KestrelError(
            f"{len(bad)} of {len(checks)} nodes failed: " + ", ".join(f"{c.target.name} ({c.problems()})" for c in bad)
        )


def _firewall_text(found: dict[str, Any]) -> str:
    return page.firewall_text((found["accepted_packets"], found["refused_packets"]))


@command.command(
    "host-keys",
    help="Push each node's image SSH host keys to it over SSH (the firewall module keeps them out of the "
    "exported image; the registrar does this when a node boots). A node with only its boot key is accepted "
    "for this if the frontend's neighbour table gives its registered MAC.",
)
@NODES
@GROUP
@click.option("--wait", type=click.FloatRange(0, 3600), default=0, show_default=True, help="Seconds to wait for SSH.")
@pass_context
def host_keys_command(ctx: Context, node_names: tuple[str, ...], group: str | None, wait: float) -> None:
    targets = fanout.select_targets(ctx.root, list(node_names), group)
    results = hostkeys.deliver(ctx.root, ctx.config, targets, wait=wait)
    for r in results:
        if r.ok:
            said = "host keys delivered" if r.changed else "has its host keys"
            logger.info(f"{r.node}: {said} (sshd answered after {r.answered:.1f} s; SSH sessions: {r.tries})")
    bad = [r for r in results if not r.ok]
    if bad:
        raise KestrelError("; ".join(f"{r.node}: host keys not delivered ({r.why})" for r in bad))


@command.command(
    "slurm-join",
    help="Push the munge key and each node's own Slurm line (from its `slurmd -C`) over SSH, then start munged "
    "and slurmd: the node joins Slurm as a dynamic node (the slurm module; the lease hook does it at boot).",
)
@NODES
@GROUP
@click.option("--wait", type=click.FloatRange(0, 3600), default=0, show_default=True, help="Seconds to wait for SSH.")
@pass_context
def slurm_join_command(ctx: Context, node_names: tuple[str, ...], group: str | None, wait: float) -> None:
    if not slurm_conf.enabled(ctx.config):
        raise InputError(f"{ctx.config_path}: modules: the slurm module is not enabled")
    targets = fanout.select_targets(ctx.root, list(node_names), group)
    results = slurm_join.join_nodes(ctx.root, ctx.config, targets, wait=wait)
    for r in results:
        if r.line is not None:
            logger.info(f"{r.node}: {'joined' if r.restarted else 'already in'} Slurm ({r.line})")
    bad = [r for r in results if r.line is None]
    if bad:
        raise KestrelError("; ".join(f"{r.node}: not joined ({r.why})" for r in bad))


@command.command(
    "wake",
    help="Send Wake-on-LAN magic packets to nodes (by name, --group, --all or --mac) on the "
    "cluster network's broadcast. KestrelHPC's --wake-node/--wake-mac/--wake-group work too.",
)
@click.argument("names", nargs=-1, shell_complete=complete_nodes)
@click.option("--group", shell_complete=complete_groups, help="Every node of this group.")
@click.option("--all", "everything", is_flag=True, help="Every registered node.")
@click.option("--mac", "macs", multiple=True, help="A MAC address, registered or not (repeatable).")
@click.option(
    "--stagger",
    type=click.FloatRange(0, 600),
    default=0.0,
    show_default=True,
    help="Seconds between two packets (spreads the power-on current of a rack).",
)
@pass_context
def wake_command(
    ctx: Context, names: tuple[str, ...], group: str | None, everything: bool, macs: tuple[str, ...], stagger: float
) -> None:
    targets = wake.select_targets(registry.load_registry(ctx.root), names, group, everything, macs)
    wake.send_magic(
        ctx.config, [mac for _, mac in targets], stagger=stagger, labels={mac: label for label, mac in targets if label}
    )


for _operation in operations.COMMANDS:
    command.add_command(_operation)


def main() -> None:
    run(command, "kestrel-nodes")


if __name__ == "__main__":
    main()
