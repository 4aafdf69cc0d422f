"""qemu node definitions: ROOT/var/lib/kestrel/vms/NAME.json (name, MAC, bridge, size), written through plans.

A stopped VM keeps its definition: kestrel.vm.listener starts it again when its magic packet arrives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

from kestrel import names
from kestrel.config import Config, KvmMode, VmKind
from kestrel.errors import InputError
from kestrel.plan import FileChange, Plan, apply_changes, plan_removal
from kestrel.sysroot import Sysroot

VMS_DIR = "/var/lib/kestrel/vms"


TAP_PREFIX = "kv-"


@dataclass(frozen=True)
class VmSpec:
    """How to run one VM. kernel/initrd/append: direct kernel boot instead of PXE (benchmarks, debugging).
    KIND container: the node runs IMAGE (None: nodes.default_image) in containers, no kernel of its own."""

    name: str
    mac: str
    bridge: str
    netns: str | None = None
    memory: int = 1024
    cpus: int = 1
    kvm: str = KvmMode.AUTO.value
    mtu: int | None = None
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    kind: str = VmKind.QEMU.value
    image: str | None = None
    server: str | None = None  # one of the config's servers: qemu runs there over SSH, on switch.bridge

    @property
    def tap(self) -> str:
        return tap_name(self.name)


def check_vm_name(name: str) -> str:
    return names.parse_label(name, "VM name")


def vm_mac(name: str) -> str:
    """A stable locally administered MAC in qemu's 52:54:00 block, from the VM's name."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def tap_name(name: str) -> str:
    """kv-NAME, or a shortened kv-NAME+hash when that would pass the 15 characters of an interface name."""
    full = TAP_PREFIX + name
    if len(full) <= 15:
        return full
    return TAP_PREFIX + name[:6] + hashlib.sha256(name.encode()).hexdigest()[:6]


def new_spec(config: Config, name: str, **given: object) -> VmSpec:
    """A VM definition from the config's defaults and the values given (None: the default). A VM on a server
    (SERVER given) is on that server's cluster bridge (switch.bridge), in no namespace of this host."""
    server = check_server(config, given.get("server"))
    base = VmSpec(
        name=check_vm_name(name),
        mac=vm_mac(name),
        bridge=config.switch.bridge if server and config.switch else config.network.interface,
        netns=None if server else config.network.netns,
        memory=config.vm.memory,
        cpus=config.vm.cpus,
        kvm=config.vm.kvm.value,
        mtu=config.network.mtu,
        server=server,
    )
    return _updated(base, given)


def check_server(config: Config, server: object) -> str | None:
    """SERVER (--server) as one of the config's servers:, None for this host; refused for anything else."""
    if server is None:
        return None
    listed = [s.name for s in config.servers]
    if server not in listed:
        raise InputError(f"--server: {server!r} is not one of servers: ({', '.join(listed) or 'none listed'})")
    if config.switch is None:
        raise InputError("--server: the config has no switch: section (the VM's tap goes on switch.bridge)")
    return str(server)


def _updated(spec: VmSpec, given: dict[str, object]) -> VmSpec:
    known = {f.name for f in fields(VmSpec)}
    changes = {k: v for k, v in given.items() if v is not None and k in known}
    if "mac" in changes:
        try:
            changes["mac"] = names.normalize_mac(str(changes["mac"]))
        except ValueError as e:
            raise InputError(f"--mac: {e}") from None
    if "image" in changes:
        changes["image"] = names.parse_label(str(changes["image"]), "--image")
    for key in ("bridge", "netns"):
        if key in changes:
            try:
                names.check_ifname(str(changes[key]))
            except ValueError as e:
                raise InputError(f"--{key}: {e}") from None
    return replace(spec, **changes)  # type: ignore[arg-type]


def load_vm(root: Sysroot, name: str) -> VmSpec | None:
    path = root.path(_definition_path(name))
    try:
        data = json.loads(path.read_text())
        return VmSpec(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: not a valid VM definition: {e}") from None


def list_vms(root: Sysroot) -> list[VmSpec]:
    folder = root.path(VMS_DIR)
    found = [load_vm(root, p.stem) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [s for s in found if s is not None]


def _definition_path(name: str) -> str:
    return f"{VMS_DIR}/{check_vm_name(name)}.json"


def plan_define(root: Sysroot, config: Config, name: str, **given: object) -> tuple[VmSpec, Plan]:
    """The VM's saved definition updated with GIVEN, or a new one from the config's defaults, and the plan that
    writes it when it changed (pure given the disk)."""
    current = load_vm(root, name)
    if current and given.get("server") is not None and given["server"] != current.server:
        check_server(config, given["server"])
        if config.switch is not None:  # moved to a server: onto its cluster bridge
            given = {**given, "bridge": given.get("bridge") or config.switch.bridge}
        current = replace(current, netns=None)
    spec = _updated(current, given) if current else new_spec(config, name, **given)
    if spec.server is not None and spec.netns is not None:
        raise InputError(f"VM {spec.name}: --netns is for a VM on this host, not on server {spec.server}")
    if spec == current:
        return spec, Plan()
    for other in list_vms(root):
        if other.name != spec.name and other.mac == spec.mac:
            raise InputError(f"MAC {spec.mac} is already the MAC of VM {other.name}")
    path = _definition_path(spec.name)
    return spec, Plan([FileChange(path, root.read(path), json.dumps(asdict(spec), indent=1).encode())])


def define_vm(root: Sysroot, config: Config, name: str, **given: object) -> VmSpec:
    """Carry out plan_define under the lock; returns the definition."""
    with root.lock():
        spec, plan = plan_define(root, config, name, **given)
        apply_changes(root, plan)
    return spec


def plan_remove(root: Sysroot, name: str) -> Plan:
    """Forget the VM's definition."""
    return plan_removal(root, _definition_path(name))
