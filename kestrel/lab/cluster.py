"""The one-machine cluster: frontend services, qemu and container nodes inside a network namespace, run from the
lab's tree.

Layout: one namespace PREFIXfe holds the cluster bridge PREFIXbr0 (the frontend's address, an IPv6 ULA for
router advertisements), dnsmasq, nginx, nfs-ganesha + rpcbind (private /run) and every node's qemu with its
tap. The tree (default /var/lib/kestrel-lab) is a complete --root: config, registry, images, homes, logs,
process records; it survives `down`, so the built image is reused by the next `up`.

How programs on the host reach the nodes: the cluster network exists only inside the namespace; the host
gets no address on it (no 10.x route leaks into the host). The lab's config says `network.netns`, and
Kestrel's programs open their sockets to nodes inside that namespace (kestrel.net.netns.call_in): after
`eval "$(kestrel-lab env)"`, kestrel-nodes exec/check/wake work from the host as on a real frontend.
Other tools run through `ip netns exec PREFIXfe ...`; `kestrel-lab ssh NODE` does that for ssh.
"""

from __future__ import annotations

import logging
import shlex
import socket
import time
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import CONFIG_PATH, Config, VmKind, load_config
from kestrel.errors import CommandError, InputError, KestrelError
from kestrel.frontend import dnsmasq, hostkeys, nfs, nginx, registrar
from kestrel.frontend.reconfigure import checked_plan, reconfigure_frontend
from kestrel.gateway import backends as gateway_backends
from kestrel.gateway import files as gateway
from kestrel.images import store
from kestrel.lab import nodes, tree
from kestrel.lab import servers as lab_servers
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.nodes import keeper, registry, ssh
from kestrel.plan import Plan, plan_lines
from kestrel.slurm import conf as slurm_conf
from kestrel.slurm import controller as slurm_controller
from kestrel.slurm import join as slurm_join
from kestrel.status import monitor, page
from kestrel.sysroot import Sysroot
from kestrel.vm import container, listener, power
from kestrel.vm import definitions as vm_definitions

logger = logging.getLogger(__name__)

SERVICES = ("registrar", "dnsmasq", "nginx", "nfs-ganesha", "haproxy", slurm_controller.SERVICE)


# -- up -------------------------------------------------------------------------------------------------


def up(
    root: Sysroot,
    count: int,
    image: str | None,
    prefix: str | None,
    *,
    rebuild: bool = False,
    timeout: float = 900.0,
    modules: list[str] | None = None,
    kind: str = VmKind.QEMU.value,
    servers: int = 0,
    per_server: int = 0,
) -> list[nodes.NodeProgress]:
    """Bring the lab up (idempotent): network, services, image, Wake-on-LAN listener, COUNT nodes of KIND (the
    nodes of the other kind stay as they are). MODULES are added to the lab's config (and stay there for later
    ups); an image built without one of them is rebuilt (firewall too: its images hold no host private key).
    SERVERS: that many servers and a switch host (kestrel.lab.servers), joined by kestrel-switch, each with
    PER_SERVER qemu nodes started there by kestrel-vm start --server."""
    before = _modules(root)
    prefix = _prefix(root, prefix)
    section = servers_section(prefix, servers, per_server) if servers else None
    config_path, config = up_frontend(root, prefix, modules, section)
    rebuild = rebuild or (before is not None and set(config.modules) - set(before) != set())
    image = image or config.nodes.default_image
    built = _ensure_image(root, config_path, image, rebuild)
    if built and supervisor.find(root, "nfs-ganesha"):
        supervisor.stop(root, "nfs-ganesha")
    # After the build: ganesha must never see an image tree with /proc or /dev mounted inside it.
    _start(root, "nfs-ganesha", nfs.ganesha_foreground_argv(root), config, ready_port=2049, private_run=True)
    if servers and supervisor.stop(root, listener.LISTENER):  # it reads the config once: now with servers:
        logger.info("Stopped the Wake-on-LAN listener to start it with the servers")
    if listener.start_listener(root, str(config_path), config.network.interface, config.network.netns):
        logger.info("Started the Wake-on-LAN listener")
    if monitor.start_supervised(root, str(config_path)):
        logger.info(f"Started the status monitor: {root.sys(page.STATUS_DIR)}/index.html, kestrel-nodes status")
    if servers:
        servers_up(root, config, prefix, servers)
    progress = nodes.start_nodes(root, config, count, kind)
    progress += nodes.start_server_nodes(root, config, lab_servers.server_names(servers), per_server)
    nodes.wait_nodes(root, config, progress, timeout)
    if slurm_conf.enabled(config) and progress:
        _join_slurm(root, config, progress)
    return progress


def up_frontend(
    root: Sysroot, prefix: str | None, modules: list[str] | None = None, servers: dict | None = None
) -> tuple[Path, Config]:
    """The tree, the namespace with its bridge, the frontend's files, dnsmasq, nginx, the gateway's HAProxy and
    slurmctld with munged when their modules are on (no image needed)."""
    prefix = _prefix(root, prefix)
    config_path = tree.prepare_tree(root, prefix, modules or [], servers)
    config = load_config(config_path)
    _network(root, config, prefix)
    reconfigure_frontend(root, config, config_path)
    # Before dnsmasq, which queues an `old` event for every lease it loads.
    _start(root, "registrar", dnsmasq.registrar_argv(root, config_path), config, ready_log=registrar.READY)
    _start(root, "dnsmasq", dnsmasq.foreground_argv(root), config, ready_log="started, version")
    _start(root, "nginx", nginx.foreground_argv(root), config, ready_port=config.boot.http_port)
    if _runs_haproxy(config):
        ready = (gateway.listen_addresses(config)[0], config.gateway.port)
        _start(root, "haproxy", gateway.haproxy_argv(root), config, ready_at=ready)
    if slurm_conf.enabled(config):
        argv = slurm_controller.launcher_argv(root)
        _start(root, slurm_controller.SERVICE, argv, config, ready_port=config.slurm.port, private_run=True)
    return config_path, config


def servers_section(prefix: str, count: int, per_server: int) -> dict:
    """The config's servers: and switch: for COUNT lab servers (and the switch host, and the frontend)."""
    hosts = lab_servers.host_octets(count)
    nodes_of = {name: per_server for name in lab_servers.server_names(count)}
    return lab_servers.servers_config(hosts, Topology(prefix).name("eth"), nodes_of, tree.names_for(prefix)[1])


def servers_up(root: Sysroot, config: Config, prefix: str, count: int) -> None:
    """The underlay, a namespace and an sshd per host (the frontend's namespace joins as server fe), their host
    keys trusted (kestrel-switch trust --fingerprint), then kestrel-switch up."""
    hosts = lab_servers.host_octets(count)
    ns, _ = tree.names_for(prefix)
    topo = Topology(prefix)
    if not netns.exists(topo.name("ul")):
        planned = [ns, topo.name("ul"), *(topo.name(h) for h in hosts if h != lab_servers.FRONTEND)]
        tree.save_state(root, tree.LabState(prefix, planned))  # first: a failed build is still taken down
        lab_servers.build_underlay(topo, hosts, existing={lab_servers.FRONTEND: ns})
        logger.info(f"Created the underlay and {len(hosts) - 1} server namespaces ({', '.join(planned[1:])})")
    missing = [topo.name(h) for h in hosts if h != lab_servers.FRONTEND and not netns.exists(topo.name(h))]
    if missing:
        raise InputError(f"--servers {count}: the lab's servers are up with another count: kestrel-lab down first")
    key = lab_servers.ensure_key(root.path(config.nodes.ssh_key))
    config_path = str(root.path(CONFIG_PATH))
    for name, octet in hosts.items():
        space = ns if name == lab_servers.FRONTEND else topo.name(name)
        address = f"{lab_servers.UNDERLAY}.{octet}"
        host_key = lab_servers.start_sshd(root, name, space, address, Path(f"{key}.pub"))
        fingerprint = lab_servers.fingerprint(host_key)
        trust = ["trust", name, "--fingerprint", fingerprint]
        _said(runner.run(runner.kestrel_argv("switch", "--root", str(root.root), "--config", config_path, *trust)))
    _said(
        runner.run(runner.kestrel_argv("switch", "--root", str(root.root), "--config", config_path, "up"), timeout=300)
    )


def _said(result: runner.Result) -> None:
    """What a program the lab ran said, as the lab's own lines."""
    for line in result.stderr.splitlines():
        logger.info(line)


def _runs_haproxy(config: Config) -> bool:
    return gateway_backends.is_enabled(config) and gateway.service_of(config) == "haproxy"


def _modules(root: Sysroot) -> list[str] | None:
    """The modules of the lab's config as it is now (None: no config yet)."""
    path = root.path(CONFIG_PATH)
    return load_config(path).modules if path.exists() else None


def _join_slurm(root: Sysroot, config: Config, progress: list[nodes.NodeProgress]) -> None:
    """The booted nodes get the munge key and start slurmd. The lease hook started a join for each in the background
    already: wait for those, then join what is left (a node that joined says so and is left alone)."""
    targets = [ssh.Target(p.name, p.ip) for p in progress if p.name]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and any(supervisor.find(root, slurm_join.join_record(t.name)) for t in targets):
        time.sleep(1)
    for joined in slurm_join.join_nodes(root, config, targets):
        if joined.line is None:
            logger.warning(f"{joined.node}: did not join Slurm ({joined.why})")
        else:
            logger.info(f"{joined.node}: {'joined' if joined.restarted else 'in'} Slurm ({joined.line})")


def _prefix(root: Sysroot, prefix: str | None) -> str:
    """PREFIX, or the one the lab has; refused while the lab is up with another."""
    tree.check_lab_root(root)
    old = tree.load_state(root)
    prefix = prefix or (old.prefix if old else tree.DEFAULT_PREFIX)
    if old and old.prefix != prefix and any(netns.exists(n) for n in old.namespaces):
        raise InputError(f"the lab under {root.root} is up with prefix {old.prefix!r}: kestrel-lab down first")
    return prefix


def _network(root: Sysroot, config: Config, prefix: str) -> None:
    ns, bridge = tree.names_for(prefix)
    if netns.exists(ns):
        return
    topo = Topology(prefix)
    tree.save_state(root, tree.LabState(prefix, [ns]))
    try:
        topo.add_netns("fe")
        topo.add_bridge(ns, "br0", str(config.network.address))
        if address := _ipv6_address(config):
            runner.run(["ip", "-n", ns, "addr", "add", address, "dev", bridge, "nodad"])
    except BaseException:
        topo.destroy()
        raise
    logger.info(f"Created network namespace {ns} with bridge {bridge} ({config.network.address})")


def _ipv6_address(config: Config) -> str | None:
    """The frontend's address in the IPv6 prefix (router advertisements), if there is one."""
    net = config.network.ipv6_prefix
    return f"{net.network_address + 1}/{net.prefixlen}" if net else None


def _start(
    root: Sysroot,
    name: str,
    argv: list[str],
    config: Config,
    *,
    ready_log: str | None = None,
    ready_port: int | None = None,
    ready_at: tuple[str, int] | None = None,
    private_run: bool = False,
) -> None:
    """Start NAME unless it runs; ready when READY_LOG is in its log, or READY_PORT (on the frontend's address)
    or READY_AT (host, port) answers."""
    if supervisor.find(root, name):
        return
    record = supervisor.start(root, name, argv, netns=config.network.netns, private_run=private_run)
    ok = True
    if ready_log:
        ok = supervisor.wait_for_log(record, ready_log, 20)
    if ready_port:
        ready_at = (str(config.network.ip), ready_port)
    if ready_at:
        ok = wait_port(config.network.netns, *ready_at, 30)
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
    argv = runner.kestrel_argv("images", "--root", str(root.root), "--config", str(config_path), "build", image)
    runner.run(argv, capture=False, timeout=3600)
    if store.current(root, image) is None:
        raise CommandError(f"image {image} was not published by kestrel-images build")
    return True


def describe_up(
    root: Sysroot,
    count: int,
    image: str | None,
    prefix: str | None,
    *,
    rebuild: bool = False,
    timeout: float = 900.0,
    diff: bool = False,
    modules: list[str] | None = None,
    kind: str = VmKind.QEMU.value,
    servers: int = 0,
    per_server: int = 0,
) -> list[str]:
    """What up would do (--dry-run), reading only: the tree's files, the network, the frontend's plan, the
    processes it would start, the image it would build, the VMs' definitions, taps and qemu."""
    prefix = _prefix(root, prefix)
    section = servers_section(prefix, servers, per_server) if servers else None
    tree_plan, text = tree.plan_tree(root, prefix, modules or [], section)
    config_path = root.path(CONFIG_PATH)
    config = load_config(config_path, text)
    ns, bridge = tree.names_for(prefix)
    lines = plan_lines(root, tree_plan, diff)
    network_ready = netns.exists(ns)
    if not network_ready:
        lines += plan_lines(root, tree.plan_state(root, tree.LabState(prefix, [ns])), diff)
        lines.append(
            f"Would create network namespace {ns} with bridge {bridge} ({config.network.address}"
            + (f", {_ipv6_address(config)})" if config.network.ipv6_prefix else ")")
        )
    frontend = checked_plan(root, config, config_path)
    # the services the lab runs are its own: only those running now are reloaded, the others are started below
    running = Plan(frontend.steps, [a for a in frontend.actions if supervisor.find(root, a.service)])
    lines += plan_lines(root, running, diff)
    lines += _would_start(root, "registrar", dnsmasq.registrar_argv(root, config_path))
    lines += _would_start(root, "dnsmasq", dnsmasq.foreground_argv(root))
    lines += _would_start(root, "nginx", nginx.foreground_argv(root))
    if slurm_conf.enabled(config):
        lines += _would_start(root, slurm_controller.SERVICE, slurm_controller.launcher_argv(root))
    image = image or config.nodes.default_image
    build = rebuild or store.current(root, image) is None
    if build:
        lines.append(f"Would build image {image}: kestrel-images build {image} (its --dry-run says how)")
    if build and (ganesha := supervisor.find(root, "nfs-ganesha")):
        lines.append(f"Would stop nfs-ganesha (pid {ganesha.pid}) after the build")
    lines += _would_start(root, "nfs-ganesha", nfs.ganesha_foreground_argv(root), again=build)
    if not supervisor.find(root, listener.LISTENER):
        lines.append(f"Would start the Wake-on-LAN listener on {config.network.interface}")
    if not supervisor.find(root, monitor.MONITOR):
        lines.append("Would start the status monitor (kestrel-nodes monitor)")
    for name in nodes.vm_names(config, count, kind):
        spec, plan = vm_definitions.plan_define(
            root, config, name, bridge=config.network.interface, netns=config.network.netns, kind=kind
        )
        if power.is_container(spec) and build:
            lines += plan_lines(root, plan, diff) + [f"Would start container node {name} on the new image"]
            continue
        lines += plan_lines(root, plan, diff) + power.describe_start(root, config, spec, network_ready=network_ready)
    if servers:
        hosts = ", ".join(lab_servers.host_octets(servers))
        lines.append(f"Would create the underlay namespace and hosts {hosts}, each with an sshd (fe: the frontend's)")
        lines.append("Would trust their host keys (kestrel-switch trust NAME --fingerprint) and run kestrel-switch up")
    server_vms = nodes.server_vm_names(lab_servers.server_names(servers), per_server) if servers else []
    lines += [f"Would start VM {vm} on {server} (kestrel-vm start {vm} --server {server})" for vm, server in server_vms]
    if count or server_vms:
        names = ", ".join([*nodes.vm_names(config, count, kind), *(vm for vm, _ in server_vms)])
        lines.append(f"Would wait until {names} answer SSH (at most {timeout:g} s)")
    return lines


def _would_start(root: Sysroot, name: str, argv: list[str], again: bool = False) -> list[str]:
    return [f"Would start {name}: {shlex.join(argv)}"] if again or not supervisor.find(root, name) else []


# -- down, status ----------------------------------------------------------------------------------


def down(root: Sysroot) -> list[str]:
    """Stop every VM and container node (removing what each made), the listener and the services (by recorded
    pid), delete the namespace; return leftovers."""
    tree.check_lab_root(root)
    state = tree.load_state(root)
    config = load_config(root.path(CONFIG_PATH)) if root.path(CONFIG_PATH).exists() else None
    problems = []
    for spec in vm_definitions.list_vms(root):
        try:
            if power.stop(root, spec.name, config=config):
                where = f" on {spec.server}" if spec.server else ""
                logger.info(f"Stopped {'container node' if power.is_container(spec) else 'VM'} {spec.name}{where}")
        except KestrelError as e:  # a server that is gone: its namespace (and its qemu) go below
            if not spec.server:
                problems.append(str(e))
    problems += power.stop_leftovers(root)
    if supervisor.stop(root, monitor.MONITOR):
        logger.info("Stopped the status monitor")
    if supervisor.stop(root, listener.LISTENER):
        logger.info("Stopped the Wake-on-LAN listener")
    if supervisor.stop(root, keeper.NAME):
        logger.info("Stopped the SSH keeper")
    for node in registry.load_registry(root):
        if supervisor.stop(root, slurm_join.join_record(node.name)):
            logger.info(f"Stopped the Slurm join of {node.name}")
        if supervisor.stop(root, hostkeys.record(node.name)):
            logger.info(f"Stopped the host key delivery to {node.name}")
    for name in reversed(SERVICES):
        if supervisor.stop(root, name):
            logger.info(f"Stopped {name}")
    for name in lab_servers.stop_sshds(root, [s.name for s in config.servers] if config else []):
        logger.info(f"Stopped the sshd of lab host {name}")
    if state:
        topo = Topology(state.prefix, namespaces=list(state.namespaces))
        problems += topo.destroy()
        for ns in state.namespaces:
            if netns.exists(ns):
                problems.append(f"network namespace {ns} is still there")
            else:
                logger.info(f"Removed network namespace {ns}")
        tree.save_state(root, None)
    for name in (*SERVICES, listener.LISTENER, monitor.MONITOR):
        if supervisor.find(root, name):
            problems.append(f"{name} is still running")
    problems += [
        f"VM {s.name} is still running"
        for s in vm_definitions.list_vms(root)
        if not s.server and power.is_running(root, s.name)
    ]
    problems += [f"container node {m.name} left {m.netns} and more" for m in container.list_manifests(root)]
    return problems


def describe_down(root: Sysroot, diff: bool = False) -> list[str]:
    """What down would do (--dry-run): the VMs, the listener and the services it would stop, the namespace."""
    tree.check_lab_root(root)
    state = tree.load_state(root)
    lines = [line for spec in vm_definitions.list_vms(root) for line in power.describe_stop(root, spec.name)]
    for name in (monitor.MONITOR, listener.LISTENER, *reversed(SERVICES)):
        record = supervisor.find(root, name)
        lines += [f"Would stop {name} (pid {record.pid})"] if record else []
    if state:
        lines += [
            f"Would delete network namespace {ns} (and stop what still runs in it)"
            for ns in state.namespaces
            if netns.exists(ns)
        ]
        lines += plan_lines(root, tree.plan_state(root, None), diff)
    return lines


def status(root: Sysroot) -> dict[str, object]:
    tree.check_lab_root(root)
    state = tree.load_state(root)
    config = load_config(root.path(CONFIG_PATH)) if root.path(CONFIG_PATH).exists() else None
    services = {}
    for name in (*SERVICES, listener.LISTENER, monitor.MONITOR):
        record = supervisor.find(root, name)
        services[name] = record.pid if record else None
    vms = power.vm_rows(root, config)
    kinds = {str(v["mac"]): str(v["kind"]) for v in vms}
    names = {str(v["mac"]): str(v["name"]) for v in vms}
    return {
        "root": str(root.root),
        "namespace": state.namespaces[0] if state and state.namespaces else None,
        "up": bool(state and all(netns.exists(n) for n in state.namespaces)),
        "network": str(config.network.address) if config else None,
        "services": services,
        "vms": vms,
        "images": [i.name for i in store.published_images(root)],
        "nodes": [
            {
                "name": n.name,
                "mac": n.mac,
                "ip": str(n.ip),
                "kind": kinds.get(n.mac, "physical"),
                "vm": names.get(n.mac),
            }
            for n in registry.load_registry(root)
        ],
    }
