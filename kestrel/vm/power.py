"""Virtual nodes of either kind (qemu, container) behind one set of verbs: start, stop, remove, console, list.

kestrel-vm, the Wake-on-LAN listener and the lab act on a VM definition through these, so a container node is
started, stopped, woken and listed exactly as a qemu node is.
"""

from __future__ import annotations

from pathlib import Path

from kestrel import supervisor
from kestrel.config import Config, VmKind
from kestrel.plan import apply_changes
from kestrel.sysroot import Sysroot
from kestrel.vm import container, definitions, qemu


def is_container(spec: definitions.VmSpec | None) -> bool:
    return spec is not None and spec.kind == VmKind.CONTAINER


def is_running(root: Sysroot, name: str) -> bool:
    """Either kind runs as the process record vm-NAME."""
    return supervisor.find(root, qemu.record_name(name)) is not None


def start(root: Sysroot, config: Config, spec: definitions.VmSpec) -> supervisor.Record | None:
    """Power SPEC on; None if it already runs."""
    if is_container(spec):
        return container.start_container(root, config, spec)
    return qemu.start_vm(root, spec)


def describe_start(root: Sysroot, config: Config, spec: definitions.VmSpec, *, network_ready: bool = True) -> list[str]:
    if is_container(spec):
        return container.describe_start(root, config, spec, network_ready=network_ready)
    return qemu.describe_start(root, spec, network_ready=network_ready)


def stop(root: Sysroot, name: str, timeout: float = 10.0) -> bool:
    """Power NAME off and remove what it made (tap; a container's namespace, veth, cgroups); False if not running."""
    if is_container(definitions.load_vm(root, name)) or container.load_manifest(root, name):
        return container.stop_container(root, name, timeout)
    return qemu.stop_vm(root, name, timeout)


def describe_stop(root: Sysroot, name: str) -> list[str]:
    if is_container(definitions.load_vm(root, name)) or container.load_manifest(root, name):
        return container.describe_stop(root, name)
    return qemu.describe_stop(root, name)


def remove(root: Sysroot, name: str) -> bool:
    """Stop NAME, then forget its definition; False if it had none."""
    stop(root, name)
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


def booted(root: Sysroot, name: str) -> bool:
    """The node got as far as a login: a qemu node's login prompt, a container node's init ready."""
    if is_container(definitions.load_vm(root, name)):
        return "kestrel-node-init: ready" in _since_start(container.console_path(root, name))
    return " login:" in _since_start(qemu.console_path(root, name))


def _since_start(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[text.rfind("=== kestrel-vm:") :]


def vm_rows(root: Sysroot) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for spec in definitions.list_vms(root):
        record = supervisor.find(root, qemu.record_name(spec.name))
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "state": "running" if record else "stopped",
                "pid": record.pid if record else None,
                "mac": spec.mac,
                "image": spec.image or "" if is_container(spec) else "",
                "bridge": spec.bridge,
                "netns": spec.netns or "",
                "memory_bytes": spec.memory * 2**20,  # the definition's is MiB, as qemu's -m
                "cpus": spec.cpus,
                "console": str(console_path(root, spec.name)),
            }
        )
    return rows
