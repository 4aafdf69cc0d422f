"""Container nodes: the published image itself, run by systemd-nspawn in namespaces of its own, no kernel to boot.

A container node is a VM definition of kind container (kestrel.vm.definitions) and, while it runs, a process
record "vm-NAME" like a qemu node's. Its root is the image's current version, read-only, as the lower layer of
an overlay whose upper layer is a tmpfs private to the node (the read-only root + RAM overlay a booted node
has): both are mounted in a mount namespace of the node's launcher, so they vanish with it and nothing the node
writes reaches the image. Its network namespace has one veth whose peer sits on the cluster bridge, with the
MAC derived from its name; nspawn adds PID, mount, UTS, IPC and cgroup namespaces. The node's init (template
container-init) asks the frontend's DHCP server for its address and name like any node, then runs the image's
sshd. Homes and hostfiles are bind mounts of the frontend's folders (this kernel has no NFS client).

Every resource a node makes is written to its manifest (ROOT/run/kestrel/containers/NAME.json) before it is
made, so `stop` and `kestrel-lab down` remove exactly those, also after the tool or nspawn was killed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kestrel import runner, supervisor, templates
from kestrel.config import Config, ContainerInit
from kestrel.errors import CommandError, InputError
from kestrel.images import store
from kestrel.net import netns
from kestrel.nodes import hostfiles
from kestrel.plan import Desired, apply_changes, plan_files
from kestrel.sysroot import LOG_DIR, RUN_DIR, Sysroot, atomic_write
from kestrel.vm import definitions

logger = logging.getLogger(__name__)

CONTAINERS_DIR = f"{RUN_DIR}/containers"
INIT_PATH = "/var/lib/kestrel/container-init"  # rendered from the template container-init
INIT_IN_NODE = "/usr/local/sbin/kestrel-node-init"
UNIT_PATH = "/var/lib/kestrel/container-node.service"  # vm.container_init: systemd; template container-node.service
UNIT_IN_NODE = "/etc/systemd/system/kestrel-node.service"
VETH_PREFIX = "kc-"
NODE_IF = "eth0"  # the name the image's MPI settings expect (openmpi: btl_tcp_if_include = eth0)
CGROUP_FS = Path("/sys/fs/cgroup")
# nspawn leaves this folder behind on a host without systemd ("we can't allow that"): the manifest names it.
NSPAWN_PROPAGATE = Path("/run/systemd/nspawn/propagate")
NSPAWN_LOCKS = Path("/run/systemd/nspawn/locks")

# Runs in a mount namespace of its own (unshare -m): joins the node's cgroups, mounts the tmpfs and the overlay
# (which vanish with the namespace), then becomes nspawn. Fixed text; every value comes in as an argument.
_LAUNCH = """set -eu
run=$1 lower=$2
shift 2
while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs"; shift; done
shift
mount -t tmpfs -o mode=0755 kestrel-node "$run"
mkdir "$run/upper" "$run/work" "$run/root"
mount -t overlay -o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" kestrel-node "$run/root"
exec "$@"
"""


@dataclass
class Manifest:
    """Everything a running container node has made on this machine (host paths, device and namespace names)."""

    name: str
    netns: str  # the node's own network namespace
    veth: str  # the host end, on BRIDGE in BRIDGE_NETNS
    bridge: str
    bridge_netns: str | None
    rundir: str  # the overlay's mount point (mounted only inside the launcher's mount namespace)
    machine: str  # nspawn's machine name
    lower: str  # the image version the node runs
    cgroups: list[str] = field(default_factory=list)
    propagate: str = ""


def node_netns(spec: definitions.VmSpec) -> str:
    """The node's network namespace: the bridge's namespace name plus the node's, hashed when that passes 15."""
    base = spec.netns or "kestrel"
    full = f"{base}-{spec.name}"
    if len(full) <= 15:
        return full
    return f"{base[:8]}-{hashlib.sha256(full.encode()).hexdigest()[:6]}"


def veth_name(name: str) -> str:
    full = VETH_PREFIX + name
    if len(full) <= 15:
        return full
    return VETH_PREFIX + name[:6] + hashlib.sha256(name.encode()).hexdigest()[:6]


def manifest_path(root: Sysroot, name: str) -> Path:
    return root.path(f"{CONTAINERS_DIR}/{definitions.check_vm_name(name)}.json")


def load_manifest(root: Sysroot, name: str) -> Manifest | None:
    path = manifest_path(root, name)
    try:
        return Manifest(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: not a container node manifest ({e}); remove it by hand") from None


def list_manifests(root: Sysroot) -> list[Manifest]:
    folder = root.path(CONTAINERS_DIR)
    found = [load_manifest(root, p.stem) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [m for m in found if m is not None]


def image_root(root: Sysroot, image: str) -> Path:
    """The current version of IMAGE, resolved: a rollout later does not move a running node's root."""
    current = store.current(root, image)
    if current is None:
        raise CommandError(f"image {image} is not published (kestrel-images build {image})")
    lower = root.path(current["root"]).resolve()
    if not lower.is_dir():
        raise CommandError(f"image {image}: its root {lower} is missing")
    if any(c in str(lower) for c in ":,\\"):
        raise InputError(f"image {image}: its root {lower} has a character an overlay cannot take (: , \\)")
    return lower


def cgroup_roots() -> list[Path]:
    """Where a node gets cgroups: the named systemd and unified hierarchies nspawn uses (it puts its payload
    under the caller's cgroup, so each node needs its own) and the memory and cpu controllers for its limits;
    on a pure cgroup2 host just /sys/fs/cgroup."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return [CGROUP_FS / h for h in ("systemd", "unified", "memory", "cpu") if (CGROUP_FS / h / "cgroup.procs").exists()]


def new_manifest(root: Sysroot, spec: definitions.VmSpec, lower: Path) -> Manifest:
    ns = node_netns(spec)
    return Manifest(
        name=spec.name,
        netns=ns,
        veth=veth_name(spec.name),
        bridge=spec.bridge,
        bridge_netns=spec.netns,
        rundir=str(root.path(f"{CONTAINERS_DIR}/{spec.name}")),
        machine=ns,
        lower=str(lower),
        cgroups=[str(r / f"kestrel-{ns}") for r in cgroup_roots()],
        propagate=str(NSPAWN_PROPAGATE / ns),
    )


def record_name(name: str) -> str:
    return f"vm-{name}"


def console_path(root: Sysroot, name: str) -> Path:
    """The node's console: what its init and nspawn print (the launcher's log)."""
    return root.path(f"{LOG_DIR}/{record_name(definitions.check_vm_name(name))}.log")


def is_running(root: Sysroot, name: str) -> bool:
    return supervisor.find(root, record_name(name)) is not None


# -- start ----------------------------------------------------------------------------------------------------


def start_container(root: Sysroot, config: Config, spec: definitions.VmSpec) -> supervisor.Record | None:
    """Start SPEC's container node; None if it already runs. Whatever an earlier run left is removed first."""
    if is_running(root, spec.name):
        return None
    old = load_manifest(root, spec.name)
    if old is not None:
        remove_resources(root, old)
    lower = image_root(root, spec.image or config.nodes.default_image)
    _check_bridge(spec)
    manifest = new_manifest(root, spec, lower)
    save_manifest(root, manifest)  # first: stop and down find what a killed start made
    try:
        init = _render_init(root)
        for command in network_commands(manifest, spec):
            runner.run(command)
        _make_cgroups(manifest, spec)
        Path(manifest.rundir).mkdir(parents=True, exist_ok=True)
        console = console_path(root, spec.name)
        console.parent.mkdir(parents=True, exist_ok=True)
        with open(console, "a") as f:
            f.write(f"\n=== kestrel-vm: {spec.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} (container) ===\n")
        argv = launch_argv(manifest, nspawn_argv(root, config, manifest, init))
        return supervisor.start(root, record_name(spec.name), argv)
    except BaseException:
        remove_resources(root, manifest)
        raise


def describe_start(root: Sysroot, config: Config, spec: definitions.VmSpec, *, network_ready: bool = True) -> list[str]:
    """What start_container would do (--dry-run)."""
    if is_running(root, spec.name):
        return []
    lower = image_root(root, spec.image or config.nodes.default_image)
    if network_ready:
        _check_bridge(spec)
    manifest = new_manifest(root, spec, lower)
    nspawn = nspawn_argv(root, config, manifest, root.path(INIT_PATH))
    return [
        f"Would write {manifest_path(root, spec.name)}",
        *(f"Would run {' '.join(c)}" for c in network_commands(manifest, spec)),
        *(f"Would create cgroup {c}" for c in manifest.cgroups),
        f"Would start container node {spec.name} on image root {lower}: unshare -m (cgroups, tmpfs and overlay "
        f"on {manifest.rundir}), then {shlex.join(nspawn)}",
    ]


def save_manifest(root: Sysroot, manifest: Manifest) -> None:
    atomic_write(manifest_path(root, manifest.name), json.dumps(asdict(manifest), indent=1).encode())


def _check_bridge(spec: definitions.VmSpec) -> None:
    if spec.netns and not netns.exists(spec.netns):
        raise CommandError(f"container node {spec.name}: network namespace {spec.netns} does not exist")
    if not _link_exists(spec.netns, spec.bridge):
        where = f" in network namespace {spec.netns}" if spec.netns else ""
        raise CommandError(f"container node {spec.name}: bridge {spec.bridge} does not exist{where}")


def network_commands(m: Manifest, spec: definitions.VmSpec) -> list[list[str]]:
    """The node's namespace, its veth (created in both namespaces at once), its MAC, MTU and the bridge port."""
    ip, inside = _ip(m.bridge_netns), ["ip", "-n", m.netns]
    mtu = ["mtu", str(spec.mtu)] if spec.mtu else []
    return [
        ["ip", "netns", "add", m.netns],
        [*inside, "link", "set", "lo", "up"],
        [*ip, "link", "add", m.veth, *mtu, "type", "veth", "peer", "name", NODE_IF, "netns", m.netns],
        [*inside, "link", "set", NODE_IF, "address", spec.mac],
        [*ip, "link", "set", m.veth, "master", m.bridge, "up"],
    ]


def _make_cgroups(m: Manifest, spec: definitions.VmSpec) -> None:
    """The node's cgroups, with its memory and CPUs as limits where the controllers are there (its facts)."""
    for folder in map(Path, m.cgroups):
        folder.mkdir(exist_ok=True)
        limits = {
            "memory.max": str(spec.memory * 1024 * 1024),
            "memory.limit_in_bytes": str(spec.memory * 1024 * 1024),
            "cpu.max": f"{spec.cpus * 100000} 100000",
            "cpu.cfs_quota_us": str(spec.cpus * 100000),
        }
        for name, value in limits.items():
            if (folder / name).exists():
                (folder / name).write_text(value)


def _render_init(root: Sysroot) -> Path:
    """The init, and the unit that runs it under the image's systemd (vm.container_init: systemd)."""
    init = Desired(INIT_PATH, templates.render(root, "container-init").encode(), mode=0o755)
    unit = Desired(UNIT_PATH, templates.render(root, "container-node.service").encode(), mode=0o644)
    apply_changes(root, plan_files(root, [init, unit]))
    return root.path(INIT_PATH)


def nspawn_argv(root: Sysroot, config: Config, m: Manifest, init: Path) -> list[str]:
    """systemd-nspawn running the image's own programs under the node's init as PID 2 (nspawn's stub init
    reaps as PID 1), or under the image's systemd (vm.container_init). No machined or system bus here:
    --register=no --keep-unit. nspawn does not grant CAP_NET_ADMIN in a namespace it did not make, and the
    DHCP client needs it."""
    binds = [f"--bind-ro={init}:{INIT_IN_NODE}"]
    home = root.path(config.nfs.home)
    if home.is_dir():
        binds.append(f"--bind={home}:{config.nfs.home}")
    shared = root.path(hostfiles.HOSTFILES_DIR)
    if shared.is_dir():
        binds.append(f"--bind-ro={shared}:{hostfiles.HOSTFILES_DIR}")
    if config.vm.container_init == ContainerInit.SYSTEMD:
        # The image's systemd as PID 1, with the init as a unit that only gets the address and the name; the
        # image's own ssh.service starts after it. systemd in a container takes systemd.wants= as an argument.
        binds.append(f"--bind-ro={root.path(UNIT_PATH)}:{UNIT_IN_NODE}")
        payload = ["--boot", f"systemd.wants={Path(UNIT_IN_NODE).name}"]
    else:
        payload = ["--as-pid2", INIT_IN_NODE]
    return [
        runner.which("systemd-nspawn") or "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        f"--machine={m.machine}",
        f"--directory={m.rundir}/root",
        f"--network-namespace-path=/run/netns/{m.netns}",
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=pipe",
        *binds,
        f"--setenv=KESTREL_NODE_IF={NODE_IF}",
        f"--setenv=KESTREL_NODE_ROOT={m.lower}",
        *payload,
    ]


def launch_argv(m: Manifest, nspawn: list[str]) -> list[str]:
    launch = ["unshare", "-m", "--propagation", "private", "sh", "-c", _LAUNCH, "kestrel-node"]
    return [*launch, m.rundir, m.lower, *m.cgroups, "--", *nspawn]


# -- stop -----------------------------------------------------------------------------------------------------


def stop_container(root: Sysroot, name: str, timeout: float = 10.0) -> bool:
    """Stop the node and remove everything its manifest names; False if it was not running."""
    stopped = supervisor.stop(root, record_name(name), timeout=timeout)
    manifest = load_manifest(root, name)
    if manifest is not None:
        remove_resources(root, manifest)
    return stopped


def describe_stop(root: Sysroot, name: str) -> list[str]:
    record = supervisor.find(root, record_name(name))
    manifest = load_manifest(root, name)
    lines = [f"Would stop container node {name} (nspawn, pid {record.pid})"] if record else []
    if manifest:
        lines.append(
            f"Would remove {name}'s network namespace {manifest.netns}, veth {manifest.veth}, "
            f"cgroups {', '.join(manifest.cgroups) or '-'} and {manifest_path(root, name)}"
        )
    return lines


def remove_resources(root: Sysroot, m: Manifest) -> list[str]:
    """Kill what still runs in the node (by cgroup and namespace), delete what the manifest names, then the
    manifest; return what could not be removed."""
    locks = _nspawn_locks(_node_pids(m))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _node_pids(m)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = _node_pids(m)
        if not pids:
            break
    problems = []
    if netns.exists(m.netns):
        runner.run(["ip", "netns", "del", m.netns], check=False)
    if _link_exists(m.bridge_netns, m.veth):
        runner.run([*_ip(m.bridge_netns), "link", "del", m.veth], check=False)
    for folder in map(Path, m.cgroups):
        _remove_cgroup(folder)
        if folder.exists():
            problems.append(f"cgroup {folder} is still there")
    run = Path(m.rundir)
    if os.path.ismount(run):
        runner.run(["umount", "-l", str(run)], check=False)
    with contextlib.suppress(FileNotFoundError, OSError):
        run.rmdir()
    for leftover in (*locks, *([Path(m.propagate)] if m.propagate else [])):
        with contextlib.suppress(FileNotFoundError, OSError):
            leftover.rmdir() if leftover.is_dir() else leftover.unlink()
    if netns.exists(m.netns):
        problems.append(f"network namespace {m.netns} is still there")
    if not problems:
        manifest_path(root, m.name).unlink(missing_ok=True)
    return problems


def _node_pids(m: Manifest) -> list[int]:
    found: set[int] = set()
    for folder in map(Path, m.cgroups):
        for procs in folder.rglob("cgroup.procs") if folder.is_dir() else []:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
    if netns.exists(m.netns):
        found.update(netns.pids(m.netns))
    return sorted(p for p in found if p != os.getpid() and _alive(p))


def _nspawn_locks(pids: list[int]) -> list[Path]:
    """nspawn's lock files for the node's root (named by its device and inode, which only a process inside
    sees); nspawn removes them when it exits, a killed nspawn does not."""
    host = os.stat("/")
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{pid}/root")
            if (st.st_dev, st.st_ino) != (host.st_dev, host.st_ino):
                found.append(NSPAWN_LOCKS / f"inode-{st.st_dev}:{st.st_ino}")
    return sorted(set(found))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _remove_cgroup(folder: Path) -> None:
    """A cgroup and the ones nspawn made inside it, deepest first (cgroup folders go with rmdir only)."""
    if not folder.is_dir():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _ip(ns: str | None) -> list[str]:
    return ["ip", *(["-n", ns] if ns else [])]


def _link_exists(ns: str | None, device: str) -> bool:
    if ns and not netns.exists(ns):
        return False
    return runner.run([*_ip(ns), "link", "show", "dev", device], check=False).returncode == 0


# -- status ---------------------------------------------------------------------------------------------------


def memory_bytes(name: str, m: Manifest | None) -> int | None:
    """What the node's processes use now (its memory cgroup), if the controller is there."""
    for folder in map(Path, m.cgroups if m else []):
        for candidate in ("memory.usage_in_bytes", "memory.current"):
            with contextlib.suppress(OSError, ValueError):
                return int((folder / candidate).read_text())
    return None
