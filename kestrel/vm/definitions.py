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
    """A VM definition from the config's defaults and the values given (None: the default)."""
    base = VmSpec(
        name=check_vm_name(name),
        mac=vm_mac(name),
        bridge=config.network.interface,
        netns=config.network.netns,
        memory=config.vm.memory,
        cpus=config.vm.cpus,
        kvm=config.vm.kvm.value,
        mtu=config.network.mtu,
    )
    return _updated(base, given)


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
    spec = _updated(current, given) if current else new_spec(config, name, **given)
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
