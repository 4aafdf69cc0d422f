"""The lab's nodes: qemu nodes started one after another, container nodes all at once, then every node followed
through registration, boot and SSH."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kestrel import runner
from kestrel.config import Config, VmKind
from kestrel.errors import CommandError
from kestrel.nodes import fanout, registry, ssh
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import power

logger = logging.getLogger(__name__)

# Container nodes are named apart from qemu nodes: the registry names each node by the order its lease came in,
# and container nodes start all at once, so a container's name is its machine's, like a physical asset tag.
CONTAINER_PATTERN = "ct{index:02d}"


@dataclass
class NodeProgress:
    vm: str
    mac: str
    kind: str = VmKind.QEMU.value
    name: str = ""
    ip: str = ""
    registered: float | None = None
    booted: float | None = None
    ssh: float | None = None

    @property
    def done(self) -> bool:
        return self.ssh is not None


def vm_names(config: Config, count: int, kind: str = VmKind.QEMU.value) -> list[str]:
    pattern = CONTAINER_PATTERN if kind == VmKind.CONTAINER else config.nodes.name_pattern
    return [pattern.format(index=config.nodes.first_index + i) for i in range(count)]


def start_nodes(root: Sysroot, config: Config, count: int, kind: str = VmKind.QEMU.value) -> list[NodeProgress]:
    """Start COUNT nodes of KIND. qemu nodes one after another, each once the previous one is registered, so VM
    and node names agree; container nodes all at once (they register in whatever order their leases come)."""
    # Also moves VMs defined by an earlier lab (another prefix) onto this lab's bridge.
    given = {"bridge": config.network.interface, "netns": config.network.netns, "kind": kind}
    return _start(root, config, [(name, given) for name in vm_names(config, count, kind)], kind)


def server_vm_names(servers: list[str], per_server: int) -> list[tuple[str, str]]:
    """(VM name, server) of PER_SERVER qemu nodes on each of SERVERS: s1n01, s1n02, s2n01... (the registry
    still names the nodes, by the order their leases come)."""
    return [(f"{server}n{i:02d}", server) for server in servers for i in range(1, per_server + 1)]


def start_server_nodes(root: Sysroot, config: Config, servers: list[str], per_server: int) -> list[NodeProgress]:
    """PER_SERVER qemu nodes on each of SERVERS (kestrel-vm start --server), one after another as start_nodes."""
    assert config.switch is not None or not servers
    bridge = config.switch.bridge if config.switch else None
    wanted = [(vm, {"server": server, "bridge": bridge}) for vm, server in server_vm_names(servers, per_server)]
    return _start(root, config, wanted, VmKind.QEMU.value)


def _start(root: Sysroot, config: Config, wanted: list[tuple[str, dict]], kind: str) -> list[NodeProgress]:
    progress = []
    for name, given in wanted:
        spec = vm_definitions.define_vm(root, config, name, **given)
        if power.start(root, config, spec):
            where = f" on {spec.server}" if spec.server else ""
            logger.info(f"Started {'container node' if power.is_container(spec) else 'VM'} {name}{where} ({spec.mac})")
        progress.append(NodeProgress(name, spec.mac, kind))
        started = time.monotonic()
        while kind == VmKind.QEMU and time.monotonic() - started < 60 and not _registered(root, spec.mac):
            time.sleep(0.5)
    return progress


def _registered(root: Sysroot, mac: str) -> registry.Node | None:
    return next((n for n in registry.load_registry(root) if n.mac == mac), None)


def wait_nodes(root: Sysroot, config: Config, progress: list[NodeProgress], timeout: float) -> None:
    """Report each node's milestones (registered, booted, SSH ready) until all are SSH-ready or TIMEOUT."""
    start = time.monotonic()
    while not all(p.done for p in progress):
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            late = ", ".join(p.vm for p in progress if not p.done)
            raise CommandError(f"not SSH-ready after {timeout:g} s: {late} (kestrel-vm console NAME shows why)")
        follow(root, config, progress, elapsed)
        time.sleep(1)


def follow(root: Sysroot, config: Config, progress: list[NodeProgress], elapsed: float) -> None:
    """One look at every node that is not SSH-ready yet: the registry once, SSH in parallel."""
    by_mac = {n.mac: n for n in registry.load_registry(root)}
    fresh = False
    for p in progress:
        node = by_mac.get(p.mac)
        if p.registered is None and node is not None:
            p.name, p.ip, p.registered = node.name, str(node.ip), elapsed
            logger.info(f"{p.vm}: registered as {p.name} ({p.ip}) [{elapsed:.0f} s]")
            fresh = True
        if p.registered is not None and p.booted is None and power.booted(root, p.vm):
            p.booted = elapsed
            logger.info(f"{p.name}: booted [{elapsed:.0f} s]")
    if fresh:
        _sync_known_hosts(root)
    # A container node is tried as soon as it is registered: its SSH is seconds away (under the image's systemd
    # its init's "ready" goes to the journal, not to the console). A qemu node's sshd starts before its login
    # prompt (with the homes, not at the end of the boot): tried from 15 s on.
    soon = [p for p in progress if p.booted or p.kind == VmKind.CONTAINER or elapsed > 15]
    ready = [p for p in soon if p.ssh is None and p.registered is not None]
    if not ready:
        return
    # A fresh pool each time: it reads known_hosts when made, and new nodes were just added there.
    with ssh.root_pool(root, config.nodes.ssh_key, 5.0, config.network.netns) as pool:
        results = fanout.fan_out(
            [ssh.Target(p.name, p.ip) for p in ready],
            # ready for the users too: systemd's "booting up" /run/nologin is gone (sshd answers root before that)
            lambda t: runner.run(["test", "!", "-e", "/run/nologin"], via=pool.on(t), timeout=10, check=False),
            parallel=16,
        )
    for p, result in zip(ready, results, strict=True):
        if result.ok:
            p.ssh = elapsed
            logger.info(f"{p.name}: SSH ready [{elapsed:.0f} s]")


def _sync_known_hosts(root: Sysroot) -> None:
    """The frontend's known_hosts learns new nodes from the image's host keys (kestrel-users sync)."""
    runner.run(runner.kestrel_argv("users", "--root", str(root.root), "sync", "--no-push"), check=False, timeout=120)
