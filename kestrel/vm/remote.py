"""qemu nodes on the servers of a multi-server cluster: started, checked and stopped over SSH (the switch's
connections, kestrel.nodes.switchhosts: host keys trusted with kestrel-switch trust).

On the server a VM is its tap on the cluster bridge (switch.bridge, made by kestrel-switch up) and a qemu started
with -daemonize, whose pid file and serial log are under RUN_DIR there. Stop kills that pid only after
/proc/PID/cmdline shows it is this VM's qemu (a pid file outlives its process, and pids are reused).
Commands stay argument lists; switchhosts quotes them at the SSH boundary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kestrel import names, runner
from kestrel.config import Config
from kestrel.errors import CommandError, InputError
from kestrel.net import switch
from kestrel.nodes import switchhosts
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions, qemu

RUN_DIR = "/run/kestrel/vm"  # on the server: gone at its reboot, like the qemu processes it describes
# prints the pid file's pid, then that process's argv one word a line (nothing if either is gone)
_SHOW = 'pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && echo "$pid" && tr "\\0" "\\n" < "/proc/$pid/cmdline"'
_APPEND = 'printf "%s\\n" "$1" >> "$2"'
_GONE = 'i=0; while [ -d "/proc/$1" ] && [ "$i" -lt "$2" ]; do sleep 0.2; i=$((i + 1)); done; ! [ -d "/proc/$1" ]'


def pid_path(name: str) -> str:
    return f"{RUN_DIR}/{definitions.check_vm_name(name)}.pid"


def console_path(name: str) -> str:
    return f"{RUN_DIR}/{definitions.check_vm_name(name)}.console"


def checked(spec: definitions.VmSpec) -> definitions.VmSpec:
    """SPEC's strings, read from a definition file, checked before any reaches a path or a command."""
    definitions.check_vm_name(spec.name)
    try:
        names.normalize_mac(spec.mac)
        names.check_ifname(spec.bridge)
        names.check_hostname(spec.server or "")
    except ValueError as e:
        raise InputError(f"VM {spec.name}: {e}") from None
    for path in (spec.kernel, spec.initrd):
        if path is not None:
            raise InputError(f"VM {spec.name}: --kernel/--initrd are files of this host; a VM on a server PXE-boots")
    return spec


def is_qemu_of(argv: list[str], name: str) -> bool:
    """ARGV (a /proc/PID/cmdline) is the qemu that start() ran for VM NAME: qemu, -name NAME, NAME's pid file."""
    if not argv or not argv[0].rsplit("/", 1)[-1].startswith("qemu-system"):
        return False
    pairs = set(zip(argv, argv[1:], strict=False))
    return ("-name", name) in pairs and ("-pidfile", pid_path(name)) in pairs


def parse_shown(text: str, name: str) -> int | None:
    """The pid of NAME's qemu from _SHOW's output, None if it does not run (or the pid is another process's)."""
    lines = text.splitlines()
    if not lines or not lines[0].strip().isdigit():
        return None
    return int(lines[0]) if is_qemu_of(lines[1:], name) else None


@dataclass(frozen=True)
class Probe:
    """What a server has for one VM."""

    qemu: str | None  # qemu's path there
    kvm_ok: bool
    bridge: bool
    tap: bool
    pid: int | None


def remote_argv(spec: definitions.VmSpec, program: str, kvm: bool) -> list[str]:
    """qemu's argv on the server: the local one (qemu.qemu_argv), daemonized with its pid file."""
    return [*qemu.qemu_argv(spec, console_path(spec.name), kvm, program), "-daemonize", "-pidfile", pid_path(spec.name)]


class Remote:
    """The servers of CONFIG that VMs run on, one SSH connection each (opened when first used)."""

    def __init__(self, root: Sysroot, config: Config) -> None:
        self.root, self.config = root, config
        self.hosts: dict[str, switchhosts.Host] = {}

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            host.close()

    def host(self, server: str) -> switchhosts.Host:
        if server not in self.hosts:
            self.hosts[server] = switchhosts.Host(self.root, self.config, switchhosts.server_named(self.config, server))
        return self.hosts[server]

    def _steps(self, spec: definitions.VmSpec, steps: list[switch.Step], stop: bool) -> list[tuple[int, str]]:
        assert spec.server is not None
        return switchhosts.run_steps(self.host(spec.server), steps, stop_on_error=stop)

    def probe(self, spec: definitions.VmSpec) -> Probe:
        checked(spec)
        steps = [
            switch.Step(["sh", "-c", f"command -v {qemu.QEMU}"]),
            switch.Step(["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"]),
            switch.Step(["grep", "-m", "1", "^flags", "/proc/cpuinfo"]),
            switch.Step(["ip", "link", "show", "dev", spec.bridge]),
            switch.Step(["ip", "link", "show", "dev", spec.tap]),
            switch.Step(["sh", "-c", _SHOW, "sh", pid_path(spec.name)]),
        ]
        (q_rc, q_out), (kvm_rc, _), (_, flags), (br_rc, _), (tap_rc, _), (_, shown) = self._steps(spec, steps, False)
        return Probe(
            q_out.strip() if q_rc == 0 and q_out.strip() else None,
            kvm_rc == 0 and qemu.kvm_usable(flags),
            br_rc == 0,
            tap_rc == 0,
            parse_shown(shown, spec.name),
        )

    def pid(self, spec: definitions.VmSpec) -> int | None:
        checked(spec)
        ((_, shown),) = self._steps(spec, [switch.Step(["sh", "-c", _SHOW, "sh", pid_path(spec.name)])], False)
        return parse_shown(shown, spec.name)

    def start_steps(self, spec: definitions.VmSpec, probe: Probe) -> list[switch.Step]:
        """The tap (qemu.tap_commands) and the daemonized qemu, as steps on the server; refuses a server without
        qemu or without the cluster bridge."""
        if probe.qemu is None:
            raise InputError(f"{spec.server}: {qemu.QEMU} is not installed there (apt-get install qemu-system-x86)")
        if not probe.bridge:
            raise CommandError(f"{spec.server}: no bridge {spec.bridge} there (kestrel-switch up makes it)")
        kvm = qemu.want_kvm(spec.kvm, probe.kvm_ok)
        banner = f"=== kestrel-vm: {spec.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} on {spec.server} ==="
        return [
            switch.Step(["mkdir", "-p", RUN_DIR]),
            switch.Step(["sh", "-c", _APPEND, "sh", banner, console_path(spec.name)]),
            *(switch.Step(c) for c in qemu.tap_commands(spec, ["ip"], probe.tap)),
            switch.Step(remote_argv(spec, probe.qemu, kvm)),
        ]

    def start(self, spec: definitions.VmSpec) -> int | None:
        """Start SPEC's qemu on its server; its pid there, None if it already ran."""
        probe = self.probe(spec)
        if probe.pid is not None:
            return None
        self._steps(spec, self.start_steps(spec, probe), True)
        pid = self.pid(spec)
        if pid is None:
            raise CommandError(f"{spec.server}: qemu of {spec.name} exited at once (kestrel-vm console {spec.name})")
        return pid

    def describe_start(self, spec: definitions.VmSpec) -> list[str]:
        probe = self.probe(spec)
        if probe.pid is not None:
            return []
        return [f"Would run on {spec.server}: {' '.join(s.argv)}" for s in self.start_steps(spec, probe)]

    def stop(self, spec: definitions.VmSpec, timeout: float = 10.0) -> bool:
        """Kill SPEC's qemu (the pid file's process, once it is known to be that qemu), remove its tap and pid
        file; False if it was not running."""
        pid = self.pid(spec)
        if pid is not None:
            ticks = str(max(1, int(timeout * 5)))
            (_, _), (gone, _) = self._steps(
                spec, [switch.Step(["kill", str(pid)]), switch.Step(["sh", "-c", _GONE, "sh", str(pid), ticks])], False
            )
            if gone != 0 and self.pid(spec) == pid:  # still that qemu: no more asking
                self._steps(spec, [switch.Step(["kill", "-KILL", str(pid)])], False)
        self._steps(spec, self.stop_steps(spec), False)
        return pid is not None

    def stop_steps(self, spec: definitions.VmSpec) -> list[switch.Step]:
        return [switch.Step(["ip", "link", "del", spec.tap]), switch.Step(["rm", "-f", pid_path(spec.name)])]

    def describe_stop(self, spec: definitions.VmSpec) -> list[str]:
        pid = self.pid(spec)
        lines = [f"Would stop VM {spec.name} on {spec.server} (qemu, pid {pid} there)"] if pid else []
        return lines + [f"Would run on {spec.server}: {' '.join(s.argv)}" for s in self.stop_steps(spec)]

    def console(self, spec: definitions.VmSpec, offset: int = 0) -> bytes:
        """The serial log from byte OFFSET on ('' if it has none yet)."""
        checked(spec)
        assert spec.server is not None
        argv = ["tail", "-c", f"+{offset + 1}", console_path(spec.name)]
        result = runner.run(argv, via=self.host(spec.server), timeout=60, check=False)
        if result.returncode is None:
            result.check()
        return result.stdout.encode() if result.returncode == 0 else b""
