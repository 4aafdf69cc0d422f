"""Benchmark: a registration storm. N new leases delivered to the lease hook one after the other (as dnsmasq
runs its dhcp-script: serially), with the queue + registrar against the old per-event Python hook, same run.

Run: .venv/bin/python bench/bench_leases.py [--leases 500] [--old-leases 500] [--existing 0]
Every case runs on a fresh --root tree under /tmp (no service: dnsmasq's reload is skipped). Figures:
- hook ms: wall time of one hook run as dnsmasq sees it (fork + exec + exit), median / 95th percentile / max;
- all registered s: from the first delivery until every MAC is in the registry, in the /etc/hosts block and
  in the openmpi hostfile (checked every 20 ms);
- killed: the registrar gets SIGKILL after half the deliveries and starts again after the last one: the
  events queued meanwhile must all land (lost = MACs missing at the end).
The old hook is the one Kestrel shipped before the queue: `exec python -I -m kestrel.cli.nodes ... lease-event`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from bench_registry import make_tree

from kestrel.frontend import dnsmasq
from kestrel.frontend.registrar import READY
from kestrel.nodes import leasequeue, registry
from kestrel.nodes.state import NodeState, State, format_states
from kestrel.sysroot import Sysroot

HOOK = "/usr/local/lib/kestrel/lease-hook"
OLD_HOOK = '#!/bin/sh\nexec {python} -I -m kestrel.cli.nodes --root {root} --config {config} lease-event "$@"\n'
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # dnsmasq's script environment is as bare


def leases(count: int, first: int = 0) -> list[tuple[str, str]]:
    base = int(IPv4Address("10.20.64.1"))
    return [
        (f"52:54:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:02", str(IPv4Address(base + i)))
        for i in range(first, first + count)
    ]


def frontend(work: Path, name: str, existing: int) -> Sysroot:
    """A rendered frontend with EXISTING registered nodes that are up (their lines are in every file)."""
    root = make_tree(work, name)
    if existing:
        nodes = [
            registry.Node(f"node{i + 1:05d}", mac, IPv4Address(ip), "default", "compute")
            for i, (mac, ip) in enumerate(leases(existing))
        ]
        root.path(registry.REGISTRY_PATH).write_bytes(registry.format_registry(nodes).encode())
        states = {n.mac: NodeState(State.UP, 1795000000) for n in nodes}
        root.path("/var/lib/kestrel").mkdir(parents=True, exist_ok=True)
        root.path("/var/lib/kestrel/nodes.json").write_bytes(format_states(states))
    proc = subprocess.run(
        [sys.executable, "-m", "kestrel.cli.reconfigure", "--root", str(root.root), "-q", "--frontend"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"reconfigure failed: {proc.stderr}")
    return root


def all_registered(root: Sysroot, macs: list[str], ips: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            nodes = root.path(registry.REGISTRY_PATH).read_text()
            hosts = root.path("/etc/hosts").read_text()
            openmpi = root.path("/etc/kestrel/hostfiles/openmpi").read_text()
        except FileNotFoundError:
            return False
        have = {line.split(",", 1)[0] for line in nodes.splitlines()}
        named = {line.split("\t", 1)[0] for line in hosts.splitlines()}
        return all(m in have for m in macs) and all(ip in named for ip in ips) and _up_lines(openmpi) >= up

    up = len(registry.load_registry(root)) + len(macs)

    return check


def _up_lines(hostfile: str) -> int:
    return sum(1 for line in hostfile.splitlines() if line.endswith("slots=1"))


def registrar(root: Sysroot) -> subprocess.Popen[str]:
    argv = dnsmasq.registrar_argv(root, root.path("/etc/kestrel/kestrel.yaml"))
    log = root.path("/var/log/kestrel/registrar.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(argv, stderr=log.open("a"), text=True)
    deadline = time.monotonic() + 60
    while READY not in log.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"the registrar did not start: {log.read_text()[-400:]}")
        time.sleep(0.02)
    return proc


def deliver(hook: str, events: list[tuple[str, str]], between: Callable[[int], None] = lambda i: None) -> list[float]:
    """Run HOOK add MAC IP for each event, one after the other; the milliseconds of each run."""
    took = []
    for i, (mac, ip) in enumerate(events):
        began = time.perf_counter()
        proc = subprocess.run([hook, "add", mac, ip], capture_output=True, text=True, env=ENV, timeout=600)
        took.append((time.perf_counter() - began) * 1000)
        if proc.returncode != 0:
            raise SystemExit(f"{hook} add {mac} {ip}: exit {proc.returncode}: {proc.stderr.strip()}")
        between(i)
    return took


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def lost(root: Sysroot, macs: list[str]) -> int:
    have = {n.mac for n in registry.load_registry(root)}
    return sum(1 for m in macs if m not in have)


Row = tuple[str, int, list[float], float, int | str, int | str]


def queued_case(work: Path, name: str, count: int, existing: int, kill: bool) -> Row:
    root = frontend(work, name, existing)
    events = leases(count, first=existing)
    macs, ips = [m for m, _ in events], [ip for _, ip in events]
    done = all_registered(root, macs, ips)
    proc = registrar(root)
    killed: list[int] = []

    def kill_half(i: int) -> None:
        if kill and i == count // 2:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed.append(len(leasequeue.queued_files(root)))

    try:
        began = time.monotonic()
        took = deliver(root.sys(HOOK), events, kill_half)
        if kill:
            proc = registrar(root)
        wait(done, 300)
        total = time.monotonic() - began
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    batches = root.path("/var/log/kestrel/registrar.log").read_text().count("Applied ")
    label = "queue + registrar" + (" (SIGKILL at half, restarted)" if kill else "")
    return (label, count, took, total, batches, lost(root, macs))


def old_case(work: Path, count: int, existing: int) -> Row:
    root = frontend(work, "old", existing)
    hook = root.path("/usr/local/lib/kestrel/old-lease-hook")
    hook.write_text(
        OLD_HOOK.format(python=sys.executable, root=root.root, config=root.path("/etc/kestrel/kestrel.yaml"))
    )
    hook.chmod(0o755)
    events = leases(count, first=existing)
    done = all_registered(root, [m for m, _ in events], [ip for _, ip in events])
    began = time.monotonic()
    took = deliver(str(hook), events)
    total = time.monotonic() - began
    assert done()
    return ("old hook (Python per event)", count, took, total, count, lost(root, [m for m, _ in events]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=500)
    parser.add_argument("--old-leases", type=int, default=100, help="events through the old hook (it is slow)")
    parser.add_argument("--existing", type=int, default=0, help="nodes registered (and up) before the storm")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp:
        work = Path(tmp)
        rows.append(queued_case(work, "queued", args.leases, args.existing, kill=False))
        rows.append(queued_case(work, "killed", args.leases, args.existing, kill=True))
        if args.old_leases:
            rows.append(old_case(work, args.old_leases, args.existing))
    print(f"{args.existing} nodes registered before; {os.cpu_count()} cores")  # noqa: T201
    head = f"{'case':<46} {'leases':>6} {'hook ms median':>14} {'p95':>7} {'max':>7} {'all registered s':>16}"
    print(f"{head} {'batches':>7} {'lost':>4}")  # noqa: T201
    for case, count, took, total, batches, missing in rows:
        p95 = statistics.quantiles(took, n=20)[-1] if len(took) > 1 else took[0]
        print(  # noqa: T201
            f"{case:<46} {count:>6} {statistics.median(took):>14.1f} {p95:>7.1f} {max(took):>7.1f} "
            f"{total:>16.2f} {batches!s:>7} {missing!s:>4}"
        )
    old = [r for r in rows if r[0].startswith("old")]
    if old and old[0][1] < args.leases:
        # its cost per event only grows with the registry, so this is a lower bound
        floor = statistics.median(old[0][2]) * args.leases / 1000
        print(f"old hook, {args.leases} events at its median: >= {floor:.0f} s")  # noqa: T201
    print(f"goals: hook median <= 20 ms; all {args.leases} registered <= 10 s; 0 lost")  # noqa: T201


if __name__ == "__main__":
    main()
