"""kestrel-vm: qemu nodes that boot from the network and container nodes that run the image (start, stop, list,
console, the Wake-on-LAN listener)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from kestrel import supervisor
from kestrel.cli import common
from kestrel.cli.common import Context, Group, global_options, json_option, pass_context, print_rows, run
from kestrel.cli.completion import complete_images
from kestrel.config import KvmMode, VmKind
from kestrel.errors import InputError
from kestrel.plan import plan_lines
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import listener, power

logger = logging.getLogger("kestrel.cli")  # not __name__: these modules also run as __main__


@click.group(
    cls=Group,
    help="Virtual nodes: qemu nodes that boot from the cluster network (PXE), with their serial consoles, and "
    "container nodes that run the published image itself (--kind container).",
)
@global_options
def command() -> None:
    pass


def _spec(ctx: Context, name: str) -> vm_definitions.VmSpec:
    spec = vm_definitions.load_vm(ctx.root, vm_definitions.check_vm_name(name))
    if spec is None:
        raise InputError(f"no VM named {name!r} (kestrel-vm list shows them; kestrel-vm start {name} makes it)")
    return spec


@command.command(help="Define NAME if new (or update the options given), then power it on.")
@click.argument("name")
@click.option("--mac", help="MAC address [default: derived from NAME].")
@click.option("--memory", type=click.IntRange(128), help="MiB of RAM [default: config vm.memory].")
@click.option("--cpus", type=click.IntRange(1, 256), help="vCPUs [default: config vm.cpus].")
@click.option("--bridge", help="Cluster bridge for the tap [default: config network.interface].")
@click.option("--netns", help="Namespace of the bridge [default: config network.netns].")
@click.option(
    "--server",
    help="Run qemu on this one of the config's servers (over SSH, on its switch.bridge) [default: this host].",
)
@click.option("--kvm", type=click.Choice([m.value for m in KvmMode]), help="Hardware acceleration.")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in VmKind]),
    help="qemu (boots from the network) or container (runs the image in namespaces) [default: qemu].",
)
@click.option(
    "--image", shell_complete=complete_images, help="The image a container node runs [default: nodes.default_image]."
)
@click.option("--kernel", type=click.Path(exists=True, dir_okay=False), help="Boot this kernel directly, not PXE.")
@click.option("--initrd", type=click.Path(exists=True, dir_okay=False), help="initrd for --kernel.")
@click.option("--append", help="Kernel command line for --kernel.")
@common.dry_run_options
@pass_context
def start(ctx: Context, name: str, dry_run: bool, diff: bool, **given: object) -> None:
    if dry_run:
        spec, plan = vm_definitions.plan_define(ctx.root, ctx.config, name, **given)
        common.print_dry_run(plan_lines(ctx.root, plan, diff) + power.describe_start(ctx.root, ctx.config, spec))
        return
    spec = vm_definitions.define_vm(ctx.root, ctx.config, name, **given)
    pid = power.start(ctx.root, ctx.config, spec)
    if pid is None:
        logger.info(f"{spec.name} is already running" + (f" on {spec.server}" if spec.server else ""))
    elif power.is_container(spec):
        logger.info(
            f"Started container node {spec.name} (pid {pid}, MAC {spec.mac} on {spec.bridge}); "
            f"console: kestrel-vm console {spec.name}"
        )
    else:
        where = f" on {spec.server}" if spec.server else ""
        logger.info(
            f"Started {spec.name}{where} (pid {pid}, MAC {spec.mac}, tap {spec.tap} on {spec.bridge}); "
            f"console: kestrel-vm console {spec.name}"
        )


@command.command(help="Power NAME off (its qemu or container, nothing else); the definition stays.")
@click.argument("names", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Also forget the VM's definition.")
@common.dry_run_options
@pass_context
def stop(ctx: Context, names: tuple[str, ...], remove: bool, dry_run: bool, diff: bool) -> None:
    if dry_run:
        lines = []
        for name in names:
            _spec(ctx, name)
            lines += power.describe_stop(ctx.root, name, ctx.config)
            lines += plan_lines(ctx.root, vm_definitions.plan_remove(ctx.root, name), diff) if remove else []
        common.print_dry_run(lines)
        return
    for name in names:
        _spec(ctx, name)
        stopped = power.remove(ctx.root, name, ctx.config) if remove else power.stop(ctx.root, name, config=ctx.config)
        logger.info(f"{'Stopped' if stopped else 'Not running:'} {name}" + (" and removed it" if remove else ""))


@command.command(name="list", help="The defined VMs and container nodes and whether they run.")
@json_option
@pass_context
def list_(ctx: Context, as_json: bool) -> None:
    columns = ["name", "kind", "state", "server", "pid", "mac", "bridge", "netns", "memory", "cpus"]
    print_rows(
        power.vm_rows(ctx.root, ctx.config),
        columns,
        as_json,
        lambda r: r | {"memory": f"{r['memory_bytes'] // 2**20} MiB", "pid": r["pid"] or ""},
    )


@command.command(help="Print NAME's serial console log, or a container node's output (-f: keep printing).")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until interrupted.")
@pass_context
def console(ctx: Context, name: str, follow: bool) -> None:
    _spec(ctx, name)
    for chunk in power.console_chunks(ctx.root, ctx.config, name, follow):
        if chunk:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


@command.command(help="Start stopped VMs and container nodes when their magic packet crosses the bridge.")
@click.option("--bridge", help="Bridge to listen on [default: config network.interface].")
@click.option("--netns", help="Namespace of the bridge [default: config network.netns].")
@click.option("--background", is_flag=True, help="Run as a supervised process of ROOT and return.")
@click.option("--stop", "stop_it", is_flag=True, help="Stop the background listener.")
@pass_context
def listen(ctx: Context, bridge: str | None, netns: str | None, background: bool, stop_it: bool) -> None:
    if stop_it:
        stopped = supervisor.stop(ctx.root, listener.LISTENER)
        logger.info("Stopped the listener" if stopped else "No listener was running")
        return
    bridge = bridge or ctx.config.network.interface
    netns = netns or ctx.config.network.netns
    if background:
        record = listener.start_listener(ctx.root, str(Path(ctx.config_path).resolve()), bridge, netns)
        logger.info("A listener is already running" if record is None else f"Started the listener (pid {record.pid})")
        return
    try:
        listener.listen(ctx.root, ctx.config, bridge, netns)
    except KeyboardInterrupt:
        pass


def main() -> None:
    run(command, "kestrel-vm")


if __name__ == "__main__":
    main()
