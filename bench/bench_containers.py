"""Container nodes on a lab: start -> DHCP lease -> registered -> SSH-ready per node, for N = 1, 10, 50 started at
once, and their memory when idle (each node's memory cgroup), with Kestrel's minimal init and with the image's
systemd; `mpirun -n 50` of cpi (MPI_Bcast + MPI_Reduce) across the 50 as a cluster user; and, as the baseline in
the same run, one qemu node's boot (under the machine's qemu lock).

Run as root: .venv/bin/python bench/bench_containers.py [--root DIR] [--counts 1,10,50] [--systemd-counts 1,10]
  [--skip-qemu] [--skip-mpi] [--qemu-lock /work/locks/qemu.lock]
The lab tree (default /var/lib/kestrel-lab-bench) is brought up with no nodes if it is not up, and down again at
the end if it was not up before. The image must have openmpi's mpicc for the MPI part (else it is skipped).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import io
import math
import os
import re
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from kestrel import runner, supervisor
from kestrel.config import CONFIG_PATH, Config, load_config
from kestrel.frontend.node_changes import change_nodes
from kestrel.lab import cluster as lab
from kestrel.lab import tree
from kestrel.net import netns
from kestrel.nodes import fanout, leases, registry, ssh
from kestrel.nodes.registry import Node
from kestrel.nodes.state import States
from kestrel.sysroot import Sysroot
from kestrel.vm import container, power
from kestrel.vm import definitions as vm_definitions

TIMEOUT = 300.0
USER = "alice"
CPI_C = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size, n;
    double h, x, sum = 0.0, mine, pi = 0.0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    n = rank == 0 ? 2000000 : 0;
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    h = 1.0 / n;
    for (int i = rank + 1; i <= n; i += size) { x = h * (i - 0.5); sum += 4.0 / (1.0 + x * x); }
    mine = h * sum;
    MPI_Reduce(&mine, &pi, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("pi=%.15f ranks=%d\n", pi, size);
    MPI_Finalize();
    return 0;
}
"""


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Timing:
    name: str
    mac: str
    start: float
    lease: float | None = None
    registered: float | None = None
    ssh: float | None = None
    node: str = ""
    ip: str = ""
    memory: int | None = None


def set_vm(root: Sysroot, **values: str) -> Config:
    path = root.path(CONFIG_PATH)
    yaml = YAML(typ="rt")
    data = yaml.load(path.read_text())
    data.setdefault("vm", {}).update(values)
    out = io.StringIO()
    yaml.dump(data, out)
    path.write_text(out.getvalue())
    return load_config(path)


def forget(root: Sysroot, config: Config, macs: set[str]) -> None:
    """Take MACS out of the registry and out of dnsmasq's leases (dnsmasq stopped meanwhile), so their next lease
    registers them again and a dnsmasq restart does not register them from their old leases."""

    def change(nodes: list[Node], states: States) -> tuple[list[Node], States]:
        return [n for n in nodes if n.mac not in macs], {m: s for m, s in states.items() if m not in macs}

    supervisor.stop(root, "dnsmasq")
    path = root.path(config.network.leases_file)
    if path.exists():
        kept = [line for line in path.read_text().splitlines(keepends=True) if not set(line.split()[1:2]) & macs]
        path.write_text("".join(kept))
    change_nodes(root, config, change)
    lab.up_frontend(root, None)


def follow(root: Sysroot, config: Config, timings: list[Timing], qemu: bool = False) -> None:
    """Poll leases, registry and SSH until every node answers SSH (at most TIMEOUT)."""
    deadline = time.monotonic() + (600 if qemu else TIMEOUT)
    while any(t.ssh is None for t in timings) and time.monotonic() < deadline:
        now = time.monotonic()
        text = root.path(config.network.leases_file).read_text(errors="replace")
        leased = {lease.mac for lease in leases.parse_leases(text)[0]}
        known = {n.mac: n for n in registry.load_registry(root)}
        for t in timings:
            if t.lease is None and t.mac in leased:
                t.lease = now - t.start
            if t.registered is None and t.mac in known:
                t.registered, t.node, t.ip = now - t.start, known[t.mac].name, str(known[t.mac].ip)
        waiting = [t for t in timings if t.ssh is None and t.registered is not None]
        if waiting:
            with ssh.root_pool(root, config.nodes.ssh_key, 3.0, config.network.netns) as pool:
                results = fanout.fan_out(
                    [ssh.Target(t.node, t.ip) for t in waiting],
                    lambda target: runner.run(["true"], via=pool.on(target), timeout=10, check=False),
                    parallel=16,
                )
            done = time.monotonic()
            for t, result in zip(waiting, results, strict=True):
                if result.ok:
                    t.ssh = done - t.start
        time.sleep(0.3 if not qemu else 2)


def run_containers(root: Sysroot, count: int, init: str, mpi: bool) -> tuple[list[Timing], float, str | None]:
    """COUNT container nodes started at once: their timings, the wall time until all are SSH-ready, cpi's output."""
    config = set_vm(root, container_init=init)
    names = [f"bc{i:02d}" for i in range(1, count + 1)]
    specs = [
        vm_definitions.define_vm(root, config, n, kind="container", bridge=config.network.interface) for n in names
    ]
    forget(root, config, {s.mac for s in specs})
    timings: list[Timing] = []
    first = time.monotonic()

    def start(spec: vm_definitions.VmSpec) -> Timing:
        t = Timing(spec.name, spec.mac, time.monotonic())
        power.start(root, config, spec)
        return t

    output = None
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            timings = list(pool.map(start, specs))
        follow(root, config, timings)
        wall = max((t.ssh or math.inf) + t.start for t in timings) - first
        time.sleep(5)  # idle
        for t in timings:
            t.memory = container.memory_bytes(t.name, container.load_manifest(root, t.name))
        if mpi:
            output = run_cpi(root, [t.node for t in timings if t.ssh is not None])
    finally:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda s: power.remove(root, s.name), specs))
        forget(root, config, {s.mac for s in specs})
    return timings, wall, output


def run_cpi(root: Sysroot, nodes: list[str]) -> str | None:
    """cpi compiled in the user's shared home on the first node, run with one rank on each of NODES."""
    env = {**os.environ, "KESTREL_ROOT": str(root.root)}
    env["KESTREL_CONFIG"] = str(root.path(CONFIG_PATH))
    kestrel = Path(sys.executable).parent

    def on(node: str, command: str, timeout: float = 600) -> runner.Result:
        argv = [str(kestrel / "kestrel-nodes"), "exec", "--user", USER, node, "--", command]
        return runner.run(argv, env=env, timeout=timeout, check=False)

    if not on(nodes[0], "command -v mpicc.openmpi").ok:
        say("  no mpicc.openmpi in the image: MPI skipped")
        return None
    source = base64.b64encode(CPI_C.encode()).decode()
    hostfile = "\n".join(f"{n} slots=1" for n in nodes)
    built = on(
        nodes[0],
        f"mkdir -p ~/bench-cpi && cd ~/bench-cpi && echo {source} | base64 -d > cpi.c && "
        f"mpicc.openmpi -O2 -o cpi cpi.c && printf '%s\\n' '{hostfile}' > hosts",
    )
    if not built.ok:
        return f"build failed: {built.sentence()}"
    started = time.monotonic()
    ran = on(nodes[0], f"cd ~/bench-cpi && timeout 300 mpirun --hostfile hosts -np {len(nodes)} ./cpi", 400)
    return f"{ran.stdout.strip()} ({time.monotonic() - started:.1f} s){'' if ran.ok else ' ' + ran.sentence()}"


def boot_qemu(root: Sysroot, lock: str, wait: float) -> Timing | None:
    """One qemu node through the same lease path, under the machine's qemu lock (one qemu run at a time); None
    if the lock stays busy for WAIT seconds."""
    config = load_config(root.path(CONFIG_PATH))
    with open(lock, "a") as held:
        say(f"Waiting for the qemu lock {lock} ...")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(5)
        spec = vm_definitions.define_vm(root, config, "bq01", kind="qemu", bridge=config.network.interface)
        forget(root, config, {spec.mac})
        t = Timing(spec.name, spec.mac, time.monotonic())
        try:
            power.start(root, config, spec)
            follow(root, config, [t], qemu=True)
        finally:
            power.remove(root, spec.name)
            forget(root, config, {spec.mac})
    return t


def _fmt(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    missing = f" ({len(values) - len(found)} never)" if len(found) < len(values) else ""
    return f"{statistics.median(found):.2f} / {max(found):.2f}{missing}"


def row(kind: str, init: str, count: int, timings: list[Timing], wall: float | None) -> str:
    mib = [t.memory / 2**20 for t in timings if t.memory is not None]
    memory = f"{statistics.mean(mib):.1f} / {max(mib):.1f}" if mib else "-"
    cells = [_fmt([getattr(t, k) for t in timings]) for k in ("lease", "registered", "ssh")]
    total = f"{wall:.1f}s" if wall is not None else "-"
    return f"{kind:<10}{init:<9}{count:>4}{cells[0]:>16}{cells[1]:>16}{cells[2]:>16}{total:>11}{memory:>16}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/var/lib/kestrel-lab-bench")
    parser.add_argument("--counts", default="1,10,50")
    parser.add_argument("--systemd-counts", default="1,10")
    parser.add_argument("--skip-qemu", action="store_true")
    parser.add_argument("--skip-mpi", action="store_true")
    parser.add_argument("--qemu-lock", default="/work/locks/qemu.lock")
    parser.add_argument("--qemu-wait", type=float, default=900, help="Seconds to wait for the qemu lock.")
    args = parser.parse_args()
    root = Sysroot(args.root)
    state = tree.load_state(root)
    was_up = bool(state and all(netns.exists(n) for n in state.namespaces))
    head = f"{'kind':<10}{'init':<9}{'N':>4}{'lease':>16}{'registered':>16}{'SSH-ready':>16}"
    print("Start -> DHCP lease -> registered -> SSH-ready, seconds after each node's start (median / max)")
    print(f"{head}{'all ready':>11}{'MiB idle':>16}", flush=True)
    try:
        lab.up(root, 0, None, None if state else f"kt-{secrets.token_hex(2)[:3]}")
        runs = [("minimal", int(n)) for n in args.counts.split(",") if n]
        runs += [("systemd", int(n)) for n in args.systemd_counts.split(",") if n]
        biggest = max((n for i, n in runs if i == "minimal"), default=0)
        cpi = None
        for init, count in runs:
            say(f"{count} container node(s), init {init} ...")
            mpi = not args.skip_mpi and init == "minimal" and count == biggest
            timings, wall, output = run_containers(root, count, init, mpi)
            cpi = output if mpi else cpi
            print(row("container", init, count, timings, wall), flush=True)
        if not args.skip_qemu:
            qemu = boot_qemu(root, args.qemu_lock, args.qemu_wait)
            print(row("qemu TCG", "systemd", 1, [qemu], None) if qemu else "qemu TCG: the qemu lock stayed busy")
        print("Goals: <= 3 s per node to SSH-ready, 50 nodes all SSH-ready in <= 60 s, < 50 MiB each when idle")
        if cpi is not None:
            found = re.search(r"pi=([0-9.]+) ranks=(\d+)", cpi)
            ok = bool(found and abs(float(found[1]) - math.pi) < 1e-6)
            ranks = found[2] if found else "?"
            print(f"mpirun -n {ranks} cpi across container nodes: {'ok' if ok else 'FAILED'}: {cpi}")
    finally:
        set_vm(root, container_init="minimal")
        if not was_up:
            lab.down(root)


if __name__ == "__main__":
    main()
