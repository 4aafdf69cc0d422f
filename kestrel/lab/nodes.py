"""The lab's qemu nodes: started one after another, then followed through registration, boot and SSH."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kestrel import runner
from kestrel.config import Config
from kestrel.errors import CommandError
from kestrel.nodes import registry, ssh
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import qemu

logger = logging.getLogger(__name__)


@dataclass
class NodeProgress:
    vm: str
    mac: str
    name: str = ""
    ip: str = ""
    registered: float | None = None
    booted: float | None = None
    ssh: float | None = None

    @property
    def done(self) -> bool:
        return self.ssh is not None


def vm_names(config: Config, count: int) -> list[str]:
    return [config.nodes.name_pattern.format(index=config.nodes.first_index + i) for i in range(count)]


def start_nodes(root: Sysroot, config: Config, count: int) -> list[NodeProgress]:
    """Start the nodes one after another, each once the previous one is registered, so VM and node names agree."""
    progress = []
    for name in vm_names(config, count):
        # Also moves VMs defined by an earlier lab (another prefix) onto this lab's bridge.
        spec = vm_definitions.define_vm(root, config, name, bridge=config.network.interface, netns=config.network.netns)
        if qemu.start_vm(root, spec):
            logger.info(f"Started VM {name} ({spec.mac}); its console: kestrel-vm console {name}")
        progress.append(NodeProgress(name, spec.mac))
        started = time.monotonic()
        while time.monotonic() - started < 60 and not _registered(root, spec.mac):
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
        for p in progress:
            _step(root, config, p, elapsed)
        time.sleep(2)


def _step(root: Sysroot, config: Config, p: NodeProgress, elapsed: float) -> None:
    if p.registered is None:
        node = _registered(root, p.mac)
        if node is None:
            return
        p.name, p.ip, p.registered = node.name, str(node.ip), elapsed
        logger.info(f"{p.vm}: registered as {p.name} ({p.ip}) [{elapsed:.0f} s]")
        _sync_known_hosts(root)
    if p.booted is None and booted(root, p.vm):
        p.booted = elapsed
        logger.info(f"{p.name}: booted, login prompt on the console [{elapsed:.0f} s]")
    if p.ssh is None and (p.booted is not None or elapsed > 60):
        # A fresh pool each time: it reads known_hosts when made, and new nodes were just added there.
        with ssh.root_pool(root, config.nodes.ssh_key, 5.0, config.network.netns) as pool:
            result = runner.run(["true"], via=pool.on(ssh.Target(p.name, p.ip)), timeout=10, check=False)
        if result.ok:
            p.ssh = elapsed
            logger.info(f"{p.name}: SSH ready [{elapsed:.0f} s]")


def booted(root: Sysroot, vm: str) -> bool:
    """A login prompt on the serial console since the VM's last start."""
    try:
        text = qemu.console_path(root, vm).read_text(errors="replace")
    except FileNotFoundError:
        return False
    return " login:" in text[text.rfind("=== kestrel-vm:") :]


def _sync_known_hosts(root: Sysroot) -> None:
    """The frontend's known_hosts learns new nodes from the image's host keys (kestrel-users sync)."""
    runner.run(runner.kestrel_argv("users", "--root", str(root.root), "sync", "--no-push"), check=False, timeout=120)
