"""Virtual nodes of either kind (qemu, container) behind one set of verbs: start, stop, remove, console, list.

kestrel-vm, the Wake-on-LAN listener and the lab act on a VM definition through these, so a container node is
started, stopped, woken and listed exactly as a qemu node is, and a qemu node on a server (kestrel.vm.remote) as
one on this host. CONFIG, where optional, is needed only for VMs on servers (None: the tree's config).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from kestrel import supervisor
from kestrel.config import CONFIG_PATH, Config, VmKind, load_config
from kestrel.errors import InputError, KestrelError
from kestrel.plan import apply_changes
from kestrel.sysroot import Sysroot
from kestrel.vm import container, definitions, qemu, remote


def is_container(spec: definitions.VmSpec | None) -> bool:
    return spec is not None and spec.kind == VmKind.CONTAINER


def is_remote(spec: definitions.VmSpec | None) -> bool:
    return spec is not None and spec.server is not None


def _config(root: Sysroot, config: Config | None) -> Config:
    return config if config is not None else load_config(root.path(CONFIG_PATH))


def is_running(root: Sysroot, name: str, config: Config | None = None) -> bool:
    """Either kind runs as the process record vm-NAME; a VM on a server as the qemu of its pid file there."""
    spec = definitions.load_vm(root, name)
    if spec is not None and is_remote(spec):
        with remote.Remote(root, _config(root, config)) as servers:
            return servers.pid(spec) is not None
    return supervisor.find(root, qemu.record_name(name)) is not None


def start(root: Sysroot, config: Config, spec: definitions.VmSpec) -> int | None:
    """Power SPEC on; its pid (on its server, for a VM on one), None if it already runs."""
    if is_remote(spec):
        with remote.Remote(root, config) as servers:
            return servers.start(spec)
    record = container.start_container(root, config, spec) if is_container(spec) else qemu.start_vm(root, spec)
    return record.pid if record else None


def describe_start(root: Sysroot, config: Config, spec: definitions.VmSpec, *, network_ready: bool = True) -> list[str]:
    if is_remote(spec):
        with remote.Remote(root, config) as servers:
            return servers.describe_start(spec)
    if is_container(spec):
        return container.describe_start(root, config, spec, network_ready=network_ready)
    return qemu.describe_start(root, spec, network_ready=network_ready)


def stop(root: Sysroot, name: str, timeout: float = 10.0, config: Config | None = None) -> bool:
    """Power NAME off and remove what it made (tap; a container's namespace, veth, cgroups); False if not running."""
    spec = definitions.load_vm(root, name)
    if spec is not None and is_remote(spec):
        with remote.Remote(root, _config(root, config)) as servers:
            return servers.stop(spec, timeout)
    if is_container(spec) or container.load_manifest(root, name):
        return container.stop_container(root, name, timeout)
    return qemu.stop_vm(root, name, timeout)


def describe_stop(root: Sysroot, name: str, config: Config | None = None) -> list[str]:
    spec = definitions.load_vm(root, name)
    if spec is not None and is_remote(spec):
        with remote.Remote(root, _config(root, config)) as servers:
            return servers.describe_stop(spec)
    if is_container(spec) or container.load_manifest(root, name):
        return container.describe_stop(root, name)
    return qemu.describe_stop(root, name)


def remove(root: Sysroot, name: str, config: Config | None = None) -> bool:
    """Stop NAME, then forget its definition; False if it had none."""
    stop(root, name, config=config)
    with root.lock():
        plan = definitions.plan_remove(root, name)
        apply_changes(root, plan)
    return not plan.is_empty


def stop_leftovers(root: Sysroot) -> list[str]:
    """Remove what container nodes without a definition left (a definition removed while the node ran, a killed
    tool); return problems."""
    problems = []
    defined = {s.name for s in definitions.list_vms(root)}
    for manifest in container.list_manifests(root):
        if manifest.name not in defined:
            supervisor.stop(root, container.record_name(manifest.name))
            problems += container.remove_resources(root, manifest)
    return problems


def console_path(root: Sysroot, name: str) -> Path:
    if is_container(definitions.load_vm(root, name)):
        return container.console_path(root, name)
    return qemu.console_path(root, name)


def console_chunks(root: Sysroot, config: Config, name: str, follow: bool) -> Iterator[bytes]:
    """NAME's console log in chunks (b"" while FOLLOW waits for more); a VM on a server's is read over SSH."""
    spec = definitions.load_vm(root, name)
    if spec is not None and is_remote(spec):
        offset = 0
        with remote.Remote(root, config) as servers:
            while True:
                chunk = servers.console(spec, offset)
                offset += len(chunk)
                yield chunk
                if not follow:
                    return
                time.sleep(1.0)
    path = console_path(root, name)
    if not path.exists():
        raise InputError(f"{name} has no console log yet ({path}): start it first")
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            yield chunk
            if not chunk and not follow:
                return
            if not chunk:
                time.sleep(0.5)


def booted(root: Sysroot, name: str) -> bool:
    """The node got as far as a login: a qemu node's login prompt, a container node's init ready. A VM on a server
    is not looked at (its console is there: an SSH read per look); the lab tries SSH from 15 s on anyway."""
    spec = definitions.load_vm(root, name)
    if spec is not None and is_remote(spec):
        return False
    if is_container(spec):
        return "kestrel-node-init: ready" in _since_start(container.console_path(root, name))
    return " login:" in _since_start(qemu.console_path(root, name))


def _since_start(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[text.rfind("=== kestrel-vm:") :]


def vm_rows(root: Sysroot, config: Config | None = None) -> list[dict[str, object]]:
    """Every VM with its state; a server's VMs are asked there (a server that cannot be reached: state unknown)."""
    rows: list[dict[str, object]] = []
    specs = definitions.list_vms(root)
    pids: dict[str, int | None] = {}
    unknown: set[str] = set()
    if any(is_remote(s) for s in specs):
        with remote.Remote(root, _config(root, config)) as servers:
            for spec in filter(is_remote, specs):
                try:
                    pids[spec.name] = servers.pid(spec)
                except KestrelError:
                    unknown.add(spec.name)
    for spec in specs:
        record = supervisor.find(root, qemu.record_name(spec.name))
        pid = pids.get(spec.name) if is_remote(spec) else record.pid if record else None
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "state": "unknown" if spec.name in unknown else "running" if pid else "stopped",
                "pid": pid,
                "server": spec.server or "",
                "mac": spec.mac,
                "image": spec.image or "" if is_container(spec) else "",
                "bridge": spec.bridge,
                "netns": spec.netns or "",
                "memory_bytes": spec.memory * 2**20,  # the definition's is MiB, as qemu's -m
                "cpus": spec.cpus,
                "console": remote.console_path(spec.name) if is_remote(spec) else str(console_path(root, spec.name)),
            }
        )
    return rows
