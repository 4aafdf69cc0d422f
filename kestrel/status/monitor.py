"""The status monitor (`kestrel-nodes monitor`): follows the boot logs and node files, probes nodes over SSH
on kept connections, marks nodes that stop answering down, and rewrites the status page on every change.

One long-running process: supervised in the lab, the systemd unit kestrel-monitor.service on a real frontend.
Probes run in worker threads, so a node that times out never delays the page. A node that answered SSH is
probed every nodes.down_after/4 seconds and marked down (state file, hostfiles) once it has failed for that
long again; a booting node is probed every second, so SSH-ready shows within about a second of sshd's answer.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import Config
from kestrel.errors import CommandError, KestrelError
from kestrel.frontend import dnsmasq, hostkeys, nginx
from kestrel.frontend.node_changes import mark_states
from kestrel.images import store
from kestrel.nodes import probes, registry, ssh, stages
from kestrel.nodes import state as nodestate
from kestrel.nodes.probes import Answer, Probes
from kestrel.nodes.registry import Node
from kestrel.nodes.stages import Stage
from kestrel.status import page, report
from kestrel.sysroot import Sysroot, atomic_write

logger = logging.getLogger(__name__)

POLL = 0.25  # seconds between two looks at the files
_FAST = {Stage.LEASE, Stage.SCRIPT, Stage.KERNEL, Stage.INITRD, Stage.ROOT}  # probed every second
_WORKERS = 16


def probe_interval(config: Config) -> float:
    return config.nodes.down_after / 4


def probe_timeout(config: Config) -> float:
    return min(float(config.nodes.ssh_timeout), probe_interval(config))


def probe_one(pool: ssh.Pool, node: Node, timeout: float) -> Answer | str:
    return probes.probe(pool, ssh.Target(node.name, str(node.ip)), timeout)


def apply_answer(found: Probes, mac: str, at: float, answer: Answer | str) -> Probes:
    return probes.answered(found, mac, at, answer) if isinstance(answer, Answer) else probes.failed(found, mac, at)


def probe_all(root: Sysroot, config: Config, nodes: list[Node], found: Probes) -> Probes:
    """One probe of every node in parallel (kestrel-nodes status without a running monitor)."""
    timeout = probe_timeout(config)
    with make_pool(root, config) as pool:
        with ThreadPoolExecutor(max_workers=_WORKERS) as workers:
            answers = list(workers.map(lambda n: (n.mac, time.time(), probe_one(pool, n, timeout)), nodes))
    for mac, at, answer in answers:
        found = apply_answer(found, mac, at, answer)
    return found


def is_running(root: Sysroot, config: Config, now: float | None = None) -> bool:
    """Whether a monitor keeps the probes fresh: it rewrites the probes file at least every probe interval."""
    try:
        age = (time.time() if now is None else now) - root.path(probes.PROBES_PATH).stat().st_mtime
    except FileNotFoundError:
        return False
    return age < 2 * probe_interval(config) + probe_timeout(config)


@dataclass
class Monitor:
    root: Sysroot
    config: Config
    pool: ssh.Pool | None  # None: no key to probe with, stages come from the logs only
    probes: Probes
    workers: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=_WORKERS))
    # MAC -> the probe in flight and the pool it runs on
    inflight: dict[str, tuple[ssh.Pool, Future[tuple[float, Answer | str]]]] = field(default_factory=dict)
    last_probe: dict[str, float] = field(default_factory=dict)
    facts: dict[str, nodestate.Facts] = field(default_factory=dict)
    signature: tuple[object, ...] = ()
    saved_at: float = 0.0
    files: report.Inputs | None = None  # what the files said at the last change
    known_hosts: tuple[object, ...] = ()
    progress: dict[str, stages.Progress] | None = None
    keyed: dict[str, float | None] = field(default_factory=dict)  # MAC -> the boot its host keys were pushed for

    def tick(self, schedule: bool = True) -> bool:
        """One look: collect probes, mark nodes, start due probes, rewrite the page if anything changed."""
        now = time.time()
        self._renew_pool()
        changed = self._collect()
        signature = self._signature()
        if signature != self.signature or self.files is None:
            # the logs are parsed again only when a file changed, not on every look
            self.files = report.read_inputs(self.root, self.config, now, self.probes)
            changed, self.signature = True, signature
        inputs, progress = self._progress(changed)
        if self._liveness(inputs, progress, now):
            changed = True
            inputs, progress = self._progress(True)
        if schedule:
            self._schedule(inputs.nodes, progress)
            self._deliver_keys(inputs.nodes, progress)
        if changed or now - self.saved_at > probe_interval(self.config):
            atomic_write(self.root.path(probes.PROBES_PATH), probes.format_probes(self.probes))
            self.saved_at = now
        if changed:
            page.write_page(self.root, self.config, report.compute(inputs, now), now)
        return changed

    def _deliver_keys(self, nodes: list[Node], progress: dict[str, stages.Progress]) -> None:
        """With the firewall module, a node that mounted its root (a boot: a reboot renews its lease without a
        lease event) gets its image's host keys pushed once it answers SSH: once per boot."""
        if not hostkeys.enabled(self.config):
            return
        for n in nodes:
            p = progress[n.mac]
            if p.stage is Stage.ROOT and self.keyed.get(n.mac) != p.since:
                self.keyed[n.mac] = p.since
                hostkeys.spawn(self.root, None, n.name)

    def _renew_pool(self) -> None:
        """A pool trusts the host keys known_hosts listed when it was made: after a change (new nodes, new
        images), later probes go through a new pool."""
        keys = tuple(_stat(p) for p in ssh.known_hosts_files(self.root))
        if not self.known_hosts or keys == self.known_hosts or self.pool is None:
            self.known_hosts = keys
            return
        self.known_hosts, old = keys, self.pool
        self.pool = make_pool(self.root, self.config)
        old.close()  # probes in flight on it end with a connection error that is not the node's: not counted
        self.last_probe.clear()  # every node is probed again at once, on the new pool

    def _progress(self, changed: bool) -> tuple[report.Inputs, dict[str, stages.Progress]]:
        """The inputs with the current probes, and each node's progress (derived again only after a change)."""
        assert self.files is not None
        inputs = replace(self.files, probes=self.probes)
        if changed or self.progress is None:
            self.progress = report.progress_by_mac(inputs)
        return inputs, self.progress

    def _collect(self) -> bool:
        changed = False
        for mac, (pool, future) in list(self.inflight.items()):
            if not future.done():
                continue
            del self.inflight[mac]
            at, answer = future.result()
            if isinstance(answer, str) and pool is not self.pool:
                continue  # its pool was closed under it (_renew_pool)
            before = self.probes.get(mac)
            if isinstance(answer, Answer):
                self.facts[mac] = answer.facts
            self.probes = apply_answer(self.probes, mac, at, answer)
            after = self.probes[mac]
            if before is None or (before.ready_at, before.down_at, probes.is_failing(before)) != (
                after.ready_at,
                after.down_at,
                probes.is_failing(after),
            ):
                changed = True
            if isinstance(answer, str) and (before is None or not probes.is_failing(before)):
                # the first failure of a node that answered is worth a line: it is marked down if it lasts
                log = logger.info if before is not None and before.ok_at is not None else logger.debug
                log(f"{mac}: no SSH answer ({answer})")
        return changed

    def _liveness(self, inputs: report.Inputs, progress: dict[str, stages.Progress], now: float) -> bool:
        """Down: an SSH-ready node failing for a probe interval. Up: a node that answers (with its booted root)."""
        updates: dict[str, tuple[bool, nodestate.Facts | None]] = {}
        for n in inputs.nodes:
            probe, state = self.probes.get(n.mac), inputs.states.get(n.mac, nodestate.NodeState())
            if probe is None:
                continue
            failing = probes.is_failing(probe)
            # judged between probes: a probe still in flight may be the answer that keeps it up
            if (
                progress[n.mac].stage is Stage.SSH
                and failing
                and n.mac not in self.inflight
                and now - (probe.failed_at or now) >= probe_interval(self.config)
            ):
                self.probes = probes.marked_down(self.probes, n.mac, now)
                logger.info(f"{n.name} stopped answering SSH: marked down")
                updates[n.name] = (False, None)
            elif not failing and (facts := self.facts.get(n.mac)) and (not state.is_up or state.root != facts.root):
                updates[n.name] = (True, facts)
        if updates:
            try:
                mark_states(self.root, self.config, updates)
            except (CommandError, KestrelError) as e:
                logger.warning(f"node states not saved: {e}")
        return bool(updates)

    def _schedule(self, nodes: list[Node], progress: dict[str, stages.Progress]) -> None:
        if self.pool is None:
            return
        mono = time.monotonic()
        timeout = probe_timeout(self.config)
        for n in nodes:
            if n.mac in self.inflight:
                continue
            period = 1.0 if progress[n.mac].stage in _FAST else probe_interval(self.config)
            if mono - self.last_probe.get(n.mac, -1e9) < period:
                continue
            self.last_probe[n.mac] = mono
            self.inflight[n.mac] = (self.pool, self.workers.submit(_timed_probe, self.pool, n, timeout))

    def _signature(self) -> tuple[object, ...]:
        paths = [
            registry.REGISTRY_PATH,
            nodestate.STATE_PATH,
            self.config.network.leases_file,
            nginx.ACCESS_LOG,
            dnsmasq.LOG_PATH,
            store.MANIFESTS_DIR,
        ]
        return tuple(_stat(self.root.path(p)) for p in paths) + tuple(
            _stat(p) for p in sorted(self.root.path(store.MANIFESTS_DIR).glob("*.json"))
        )

    def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)
        if self.pool:
            self.pool.close()


def _timed_probe(pool: ssh.Pool, node: Node, timeout: float) -> tuple[float, Answer | str]:
    answer = probe_one(pool, node, timeout)
    return time.time(), answer


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


def make_pool(root: Sysroot, config: Config) -> ssh.Pool:
    return ssh.root_pool(root, config.nodes.ssh_key, probe_timeout(config), config.network.netns)


MONITOR = "monitor"  # its supervisor record (the lab)


def start_supervised(root: Sysroot, config_path: str) -> bool:
    """The monitor as a supervised background process of ROOT (the lab); False if one already runs."""
    if supervisor.find(root, MONITOR):
        return False
    argv = runner.kestrel_argv("nodes", "--root", str(root.root), "--config", config_path, "monitor")
    record = supervisor.start(root, MONITOR, argv)
    if not supervisor.wait_for_log(record, "Monitoring ", timeout=30):
        supervisor.stop(root, MONITOR)
        raise CommandError(f"the status monitor did not start; see {record.log}")
    return True


def run_monitor(root: Sysroot, config: Config, *, once: bool = False) -> None:
    """Follow the cluster until stopped (SIGTERM); ONCE: one round of probes, then the page, then return."""
    try:
        pool: ssh.Pool | None = make_pool(root, config)
    except ssh.RemoteError as e:
        logger.warning(f"{e}: no SSH probes (no liveness, no uptime), boot stages from the logs only")
        pool = None
    monitor = Monitor(root, config, pool, probes.load_probes(root))
    logger.info(
        f"Monitoring {len(registry.load_registry(root))} nodes: down after {config.nodes.down_after} s without "
        f"SSH, page {root.sys(page.STATUS_DIR)}/index.html"
    )
    try:
        monitor.tick()
        while True:
            if once and not monitor.inflight:
                monitor.tick(schedule=False)
                return
            time.sleep(POLL)
            monitor.tick()
    finally:
        monitor.close()
