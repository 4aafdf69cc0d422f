"""qemu nodes that boot from the network: taps, start/stop by recorded pid, serial consoles.

A VM is a definition (kestrel.vm.definitions) and, while it runs, a process record "vm-NAME" (kestrel.supervisor).
Its NIC is a tap on the cluster bridge, in the bridge's namespace; the serial console is appended to
ROOT/var/log/kestrel/vm-NAME.console. qemu has no Wake-on-LAN: a stopped VM keeps its definition, and
kestrel.vm.listener starts it when its magic packet arrives.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import KvmMode
from kestrel.errors import CommandError
from kestrel.net import netns
from kestrel.sysroot import LOG_DIR, Sysroot
from kestrel.vm import definitions


def kvm_usable(cpuinfo: str | None = None) -> bool:
    """/dev/kvm that stock guests can use: also needs vmx/svm (this host's /dev/kvm is PVM, which hangs them)."""
    if cpuinfo is None:
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return False
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return "vmx" in flags or "svm" in flags
    return False


def want_kvm(mode: str, usable: bool) -> bool:
    if mode == KvmMode.YES and not usable:
        raise CommandError("kvm: yes, but KVM is not usable here (no /dev/kvm or no vmx/svm); use kvm: auto")
    return mode == KvmMode.YES or (mode == KvmMode.AUTO and usable)


QEMU = "qemu-system-x86_64"


def qemu_argv(spec: definitions.VmSpec, console: str, kvm: bool, program: str | None = None) -> list[str]:
    """The qemu command line: no display, serial to CONSOLE, one virtio NIC on the tap, PXE or direct boot.
    PROGRAM: qemu's path (default: found in this host's PATH)."""
    nic = f"virtio-net-pci,netdev=n0,mac={spec.mac}" + (f",host_mtu={spec.mtu}" if spec.mtu else "")
    argv = [
        program or runner.which(QEMU) or QEMU,
        "-name",
        spec.name,
        "-nodefaults",
        "-no-user-config",
        # -nographic (not -display none) is what makes SeaBIOS and iPXE print on the serial port too.
        "-nographic",
        *(["-accel", "kvm", "-cpu", "host"] if kvm else ["-accel", "tcg", "-cpu", "max"]),
        "-m",
        str(spec.memory),
        "-smp",
        str(spec.cpus),
        "-chardev",
        f"file,id=con0,path={console},append=on",
        "-serial",
        "chardev:con0",
        "-monitor",
        "none",
        # Never vhost=on: there is no /dev/vhost-net here and qemu 7.2 aborts instead of falling back.
        "-netdev",
        f"tap,id=n0,ifname={spec.tap},script=no,downscript=no",
        "-device",
        nic,
    ]
    if spec.kernel:
        argv += [
            "-kernel",
            spec.kernel,
            *(["-initrd", spec.initrd] if spec.initrd else []),
            "-append",
            spec.append or "",
        ]
    else:
        argv += ["-boot", "order=n"]
    return argv


def console_path(root: Sysroot, name: str) -> Path:
    return root.path(f"{LOG_DIR}/vm-{definitions.check_vm_name(name)}.console")


def record_name(name: str) -> str:
    return f"vm-{name}"


def is_running(root: Sysroot, name: str) -> bool:
    return supervisor.find(root, record_name(name)) is not None


def start_vm(root: Sysroot, spec: definitions.VmSpec, kvm_ok: bool | None = None) -> supervisor.Record | None:
    """Start SPEC's qemu (its tap first); None if it already runs."""
    if is_running(root, spec.name):
        return None
    tap, argv = start_commands(root, spec, kvm_ok)
    for command in tap:
        runner.run(command)
    console = console_path(root, spec.name)
    console.parent.mkdir(parents=True, exist_ok=True)
    with open(console, "a") as f:
        f.write(f"\n=== kestrel-vm: {spec.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
    return supervisor.start(root, record_name(spec.name), argv, netns=spec.netns)


def start_commands(
    root: Sysroot, spec: definitions.VmSpec, kvm_ok: bool | None = None, *, network_ready: bool = True
) -> tuple[list[list[str]], list[str]]:
    """The ip(8) commands that put SPEC's tap on its bridge, and qemu's argv. Refuses a missing namespace or bridge;
    NETWORK_READY False: they are still to be made (the lab's dry run), so is the tap."""
    kvm = want_kvm(spec.kvm, kvm_usable() if kvm_ok is None else kvm_ok)
    if network_ready and spec.netns and not netns.exists(spec.netns):
        raise CommandError(f"VM {spec.name}: network namespace {spec.netns} does not exist")
    if network_ready and not _link_exists(spec, spec.bridge):
        where = f" in network namespace {spec.netns}" if spec.netns else ""
        raise CommandError(f"VM {spec.name}: bridge {spec.bridge} does not exist{where}")
    made = network_ready and _link_exists(spec, spec.tap)
    return tap_commands(spec, _ip(spec), made), qemu_argv(spec, str(console_path(root, spec.name)), kvm)


def tap_commands(spec: definitions.VmSpec, ip: list[str], made: bool) -> list[list[str]]:
    """IP (ip(8), maybe with -n NS) commands that make SPEC's tap (unless MADE) and put it on its bridge up."""
    tap = [] if made else [[*ip, "tuntap", "add", "dev", spec.tap, "mode", "tap"]]
    if spec.mtu:
        tap.append([*ip, "link", "set", spec.tap, "mtu", str(spec.mtu)])
    tap.append([*ip, "link", "set", spec.tap, "master", spec.bridge, "up"])
    return tap


def describe_start(
    root: Sysroot, spec: definitions.VmSpec, kvm_ok: bool | None = None, *, network_ready: bool = True
) -> list[str]:
    """What start_vm would do (--dry-run): the tap's commands and qemu's; nothing if the VM runs."""
    if is_running(root, spec.name):
        return []
    tap, argv = start_commands(root, spec, kvm_ok, network_ready=network_ready)
    return [*(f"Would run {' '.join(c)}" for c in tap), f"Would start VM {spec.name}: {shlex.join(argv)}"]


def stop_vm(root: Sysroot, name: str, timeout: float = 10.0) -> bool:
    """Power the VM off (its recorded qemu process, nothing else) and remove its tap; False if not running."""
    spec = definitions.load_vm(root, name)
    stopped = supervisor.stop(root, record_name(name), timeout=timeout)
    for command in _untap_commands(spec):
        runner.run(command, check=False)
    return stopped


def describe_stop(root: Sysroot, name: str) -> list[str]:
    """What stop_vm would do (--dry-run)."""
    record = supervisor.find(root, record_name(name))
    return ([f"Would stop VM {name} (qemu, pid {record.pid})"] if record else []) + [
        f"Would run {' '.join(c)}" for c in _untap_commands(definitions.load_vm(root, name))
    ]


def _untap_commands(spec: definitions.VmSpec | None) -> list[list[str]]:
    """The removal of SPEC's tap, if it is there."""
    if spec is None or (spec.netns and not netns.exists(spec.netns)) or not _link_exists(spec, spec.tap):
        return []
    return [[*_ip(spec), "link", "del", spec.tap]]


def _ip(spec: definitions.VmSpec) -> list[str]:
    return ["ip", *(["-n", spec.netns] if spec.netns else [])]


def _link_exists(spec: definitions.VmSpec, device: str) -> bool:
    return runner.run([*_ip(spec), "link", "show", "dev", device], check=False).returncode == 0
