"""The one-machine cluster: frontend services and qemu nodes inside a network namespace, run from a --root tree.

Layout: one namespace PREFIXfe holds the cluster bridge PREFIXbr0 (the frontend's address, an IPv6 ULA for
router advertisements), dnsmasq, nginx, nfs-ganesha + rpcbind (private /run) and every node's qemu with its
tap. The tree (default /var/lib/kestrel-lab) is a complete --root: config, registry, images, homes, logs,
process records; it survives `down`, so the built image is reused by the next `up`.

How programs on the host reach the nodes: the cluster network exists only inside the namespace; the host
gets no address on it (no 10.x route leaks into the host). The lab's config says `network.netns`, and
Kestrel's programs open their sockets to nodes inside that namespace (kestrel.netns.call_in): after
`eval "$(kestrel-lab env)"`, kestrel-nodes exec/check/wake work from the host as on a real frontend.
Other tools run through `ip netns exec PREFIXfe ...`; `kestrel-lab ssh NODE` does that for ssh.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from kestrel import runner, shipped, supervisor
from kestrel.config import CONFIG_PATH, Config, load_config
from kestrel.errors import CommandError, InputError
from kestrel.frontend import dnsmasq, nfs, nginx
from kestrel.frontend.desired import reconfigure_frontend
from kestrel.images import store
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.nodes import registry, ssh
from kestrel.sysroot import Sysroot, atomic_write
from kestrel.vm import listener, qemu

logger = logging.getLogger(__name__)

LAB_ROOT = "/var/lib/kestrel-lab"
DEFAULT_PREFIX = "klab-"
STATE_PATH = "/run/kestrel/lab.json"
SHIPPED_ETC = shipped.ETC_KESTREL
SERVICES = ("dnsmasq", "nginx", "nfs-ganesha")
LAB_MODULES = ["core", "nfsroot", "sshd", "openmpi", "mpich"]


@dataclass
class LabState:
    prefix: str
    namespaces: list[str] = field(default_factory=list)


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


def check_lab_root(root: Sysroot) -> Sysroot:
    if root.is_host:
        raise InputError(f"the lab needs a tree of its own, not / (for example --root {LAB_ROOT})")
    return root


def names_for(prefix: str) -> tuple[str, str]:
    """(namespace, bridge) of a lab with PREFIX."""
    topo = Topology(prefix)
    return topo.name("fe"), topo.name("br0")


# -- the tree -------------------------------------------------------------------------------------------

def lab_config_text(shipped: str, prefix: str, fresh: bool) -> str:
    """The lab's kestrel.yaml: SHIPPED with the lab's namespace and bridge (and, when FRESH, the lab's choices).

    Round-trip YAML, so an admin's comments and edits of the lab's config survive a change of prefix.
    """
    ns, bridge = names_for(prefix)
    yaml = YAML(typ="rt")
    data = yaml.load(shipped) or {}
    net = data.setdefault("network", {})
    net["interface"], net["netns"] = bridge, ns
    if fresh:
        net["ipv6_prefix"] = "fd10::/64"
        data.setdefault("nfs", {})["server"] = "ganesha"
        boot = data.setdefault("boot", {})
        boot["menu_timeout"] = 1
        # qemu nodes have no display, and kernel chatter on the emulated serial port costs boot time.
        boot["cmdline"] = "console=ttyS0,115200 quiet"
        data["modules"] = yaml.load(json.dumps(LAB_MODULES))
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def prepare_tree(root: Sysroot, prefix: str) -> Path:
    """ROOT/etc/kestrel from the shipped defaults on the first run; the config names this lab's devices."""
    etc = root.path("/etc/kestrel")
    config_path = root.path(CONFIG_PATH)
    fresh = not config_path.exists()
    if fresh:
        if not SHIPPED_ETC.is_dir():
            raise CommandError(f"{SHIPPED_ETC}: the shipped /etc/kestrel is missing (run from Kestrel's source tree)")
        shutil.copytree(SHIPPED_ETC, etc, dirs_exist_ok=True)
        logger.info(f"Created the lab's tree {root.root}")
    text = config_path.read_text()
    new = lab_config_text(text if not fresh else (SHIPPED_ETC / "kestrel.yaml").read_text(), prefix, fresh)
    if new != text:
        atomic_write(config_path, new.encode())
    load_config(config_path)
    return config_path


def load_state(root: Sysroot) -> LabState | None:
    try:
        return LabState(**json.loads(root.path(STATE_PATH).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise InputError(f"{root.path(STATE_PATH)}: not a lab state file ({e}); remove it") from None


def _save_state(root: Sysroot, state: LabState) -> None:
    atomic_write(root.path(STATE_PATH), json.dumps(asdict(state), indent=1).encode())


# -- up -------------------------------------------------------------------------------------------------

def up(root: Sysroot, nodes: int, image: str | None, prefix: str | None, *, rebuild: bool = False,
       timeout: float = 900.0) -> list[NodeProgress]:
    """Bring the lab up (idempotent): network, services, image, Wake-on-LAN listener, NODES qemu nodes."""
    config_path, config = up_frontend(root, prefix)
    image = image or config.nodes.default_image
    built = _ensure_image(root, config_path, image, rebuild)
    if built and supervisor.find(root, "nfs-ganesha"):
        supervisor.stop(root, "nfs-ganesha")
    # After the build: ganesha must never see an image tree with /proc or /dev mounted inside it.
    _start(root, "nfs-ganesha", nfs.ganesha_foreground_argv(root), config, ready_port=2049, private_run=True)
    if listener.start_listener(root, str(config_path), config.network.interface, config.network.netns):
        logger.info("Started the Wake-on-LAN listener")
    progress = _start_nodes(root, config, nodes)
    _wait_nodes(root, config, progress, timeout)
    return progress


def up_frontend(root: Sysroot, prefix: str | None) -> tuple[Path, Config]:
    """The tree, the namespace with its bridge, the frontend's files, dnsmasq and nginx (no image needed)."""
    check_lab_root(root)
    old = load_state(root)
    prefix = prefix or (old.prefix if old else DEFAULT_PREFIX)
    if old and old.prefix != prefix and any(netns.exists(n) for n in old.namespaces):
        raise InputError(f"the lab under {root.root} is up with prefix {old.prefix!r}: kestrel-lab down first")
    config_path = prepare_tree(root, prefix)
    config = load_config(config_path)
    _network(root, config, prefix)
    reconfigure_frontend(root, config, config_path)
    _start(root, "dnsmasq", dnsmasq.foreground_argv(root), config, ready_log="started, version")
    _start(root, "nginx", nginx.foreground_argv(root), config, ready_port=config.boot.http_port)
    return config_path, config


def _network(root: Sysroot, config: Config, prefix: str) -> None:
    ns, bridge = names_for(prefix)
    if netns.exists(ns):
        return
    topo = Topology(prefix)
    _save_state(root, LabState(prefix, [ns]))
    try:
        topo.add_netns("fe")
        topo.add_bridge(ns, "br0", str(config.network.address))
        if config.network.ipv6_prefix:
            address = f"{config.network.ipv6_prefix.network_address + 1}/{config.network.ipv6_prefix.prefixlen}"
            runner.run(["ip", "-n", ns, "addr", "add", address, "dev", bridge, "nodad"])
    except BaseException:
        topo.destroy()
        raise
    logger.info(f"Created network namespace {ns} with bridge {bridge} ({config.network.address})")


def _start(root: Sysroot, name: str, argv: list[str], config: Config, *, ready_log: str | None = None,
           ready_port: int | None = None, private_run: bool = False) -> None:
    if supervisor.find(root, name):
        return
    record = supervisor.start(root, name, argv, netns=config.network.netns, private_run=private_run)
    ok = True
    if ready_log:
        ok = supervisor.wait_for_log(record, ready_log, 20)
    if ready_port:
        ok = wait_port(config.network.netns, str(config.network.ip), ready_port, 30)
    if not ok or not supervisor.find(root, name):
        tail = Path(record.log).read_text(errors="replace")[-600:] if Path(record.log).exists() else ""
        supervisor.stop(root, name)
        raise CommandError(f"{name} did not start (log {record.log}): {tail.strip().splitlines()[-1:] or ''}")
    logger.info(f"Started {name} (pid {record.pid})")


def wait_port(ns: str | None, host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            netns.call_in(ns, socket.create_connection, (host, port), 2).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


def _ensure_image(root: Sysroot, config_path: Path, image: str, rebuild: bool) -> bool:
    if store.current(root, image) is not None and not rebuild:
        return False
    logger.info(f"Building image {image} (kestrel-images build {image}); the first build takes several minutes")
    runner.run([sys.executable, "-m", "kestrel.cli.images", "--root", str(root.root), "--config", str(config_path),
                "build", image], capture=False, timeout=3600)
    if store.current(root, image) is None:
        raise CommandError(f"image {image} was not published by kestrel-images build")
    return True


def vm_names(config: Config, count: int) -> list[str]:
    return [config.nodes.name_pattern.format(index=config.nodes.first_index + i) for i in range(count)]


def _start_nodes(root: Sysroot, config: Config, count: int) -> list[NodeProgress]:
    """Start the nodes one after another, each once the previous one is registered, so VM and node names agree."""
    progress = []
    for name in vm_names(config, count):
        # Also moves VMs defined by an earlier lab (another prefix) onto this lab's bridge.
        spec = qemu.define_vm(root, config, name, bridge=config.network.interface, netns=config.network.netns)
        if qemu.start_vm(root, spec):
            logger.info(f"Started VM {name} ({spec.mac}); its console: kestrel-vm console {name}")
        progress.append(NodeProgress(name, spec.mac))
        started = time.monotonic()
        while time.monotonic() - started < 60 and not _registered(root, spec.mac):
            time.sleep(0.5)
    return progress


def _registered(root: Sysroot, mac: str) -> registry.Node | None:
    return next((n for n in registry.load_registry(root) if n.mac == mac), None)


def _wait_nodes(root: Sysroot, config: Config, progress: list[NodeProgress], timeout: float) -> None:
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
    return " login:" in text[text.rfind("=== kestrel-vm:"):]


def _sync_known_hosts(root: Sysroot) -> None:
    """The frontend's known_hosts learns new nodes from the image's host keys (kestrel-users sync)."""
    runner.run([sys.executable, "-m", "kestrel.cli.users", "--root", str(root.root), "sync", "--no-push"],
               check=False, timeout=120)


# -- down, status, env ----------------------------------------------------------------------------------

def down(root: Sysroot) -> list[str]:
    """Stop every VM, the listener and the services (by recorded pid), delete the namespace; return leftovers."""
    check_lab_root(root)
    state = load_state(root)
    for spec in qemu.list_vms(root):
        if qemu.stop_vm(root, spec.name):
            logger.info(f"Stopped VM {spec.name}")
    if supervisor.stop(root, listener.LISTENER):
        logger.info("Stopped the Wake-on-LAN listener")
    for name in reversed(SERVICES):
        if supervisor.stop(root, name):
            logger.info(f"Stopped {name}")
    problems: list[str] = []
    if state:
        topo = Topology(state.prefix, namespaces=list(state.namespaces))
        problems += topo.destroy()
        for ns in state.namespaces:
            if netns.exists(ns):
                problems.append(f"network namespace {ns} is still there")
            else:
                logger.info(f"Removed network namespace {ns}")
        root.path(STATE_PATH).unlink(missing_ok=True)
    for name in (*SERVICES, listener.LISTENER, *(qemu.record_name(s.name) for s in qemu.list_vms(root))):
        if supervisor.find(root, name):
            problems.append(f"{name} is still running")
    return problems


def status(root: Sysroot) -> dict[str, object]:
    check_lab_root(root)
    state = load_state(root)
    config = load_config(root.path(CONFIG_PATH)) if root.path(CONFIG_PATH).exists() else None
    services = {}
    for name in (*SERVICES, listener.LISTENER):
        record = supervisor.find(root, name)
        services[name] = record.pid if record else None
    return {
        "root": str(root.root),
        "namespace": state.namespaces[0] if state and state.namespaces else None,
        "up": bool(state and all(netns.exists(n) for n in state.namespaces)),
        "network": str(config.network.address) if config else None,
        "services": services,
        "vms": qemu.vm_rows(root),
        "images": [i.name for i in store.published_images(root)],
        "nodes": [{"name": n.name, "mac": n.mac, "ip": str(n.ip)} for n in registry.load_registry(root)],
    }


def env_text(root: Sysroot) -> str:
    """Shell lines that point Kestrel's programs at the lab (eval "$(kestrel-lab env)")."""
    config_path = root.path(CONFIG_PATH)
    config = load_config(config_path)
    ns = config.network.netns or ""
    return (f"export KESTREL_ROOT={root.root}\n"
            f"export KESTREL_CONFIG={config_path}\n"
            f"export KESTREL_LAB_NETNS={ns}\n"
            f"# The cluster network lives in namespace {ns}: kestrel-nodes exec/check/wake reach it from here;\n"
            f"# other tools: ip netns exec {ns} COMMAND, or kestrel-lab ssh NODE.\n")


def ssh_argv(root: Sysroot, node: str, command: list[str]) -> list[str]:
    """ssh as root to NODE from inside the lab's namespace, with the frontend's key and known_hosts."""
    config = load_config(root.path(CONFIG_PATH))
    target = registry.find_node(registry.load_registry(root), node)
    if not config.network.netns:
        raise InputError(f"{root.path(CONFIG_PATH)}: network.netns is not set: not a lab tree")
    return ["ip", "netns", "exec", config.network.netns, "ssh", "-i", str(root.path(config.nodes.ssh_key)),
            "-o", f"UserKnownHostsFile={root.path(ssh.KNOWN_HOSTS)}", "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={target.name}", f"root@{target.ip}", *command]
