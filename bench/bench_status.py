"""Benchmark: `kestrel-nodes status` for 50 registered nodes (goal: under 1 s) and how soon a boot event shows
on the status page (goal: within 2 s), against baselines.

Run (as root): .venv/bin/python bench/bench_status.py [--nodes N] [--boots B]. Prints a table. A fresh --root tree
under /tmp holds N registered nodes, a published image, the boot logs of B boots of every node (nginx's access
log, dnsmasq's log) and a probe record per node, as a monitor leaves them; no service (the monitor is taken as
running, so status reads its probes). Baselines in the same run: `kestrel-nodes list` (registry and state only)
on the same tree, and status on an empty cluster. Latency: a real `kestrel-nodes monitor` follows the tree (its
SSH probes go into an empty network namespace, so they fail at once and nothing leaves this machine); a boot
fetch is appended to nginx's access log or a TFTP `sent` line to dnsmasq's log, as the services write them, and
the time until status.json shows the node's new stage is measured. Baseline: the monitor's poll interval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

from kestrel import runner
from kestrel.config import load_config
from kestrel.net.netns import Topology
from kestrel.nodes import probes, registry, ssh
from kestrel.status import monitor, report
from kestrel.sysroot import Sysroot

REPO = Path(__file__).resolve().parent.parent
CONFIG = "network: {interface: eth1, address: 10.20.0.1/16, dhcp_range: [10.20.64.0, 10.20.127.255]}\n"
UA = '"-" "iPXE/1.0.0+git-20190125.36a4c85-5.1"'


def make_tree(parent: Path, name: str, count: int, boots: int, ns: str) -> Sysroot:
    """The tree; its cluster network is the empty namespace NS, so no SSH probe ever leaves this machine."""
    root = Sysroot(parent / name)
    shutil.copytree(REPO / "etc-kestrel", root.path("/etc/kestrel"))
    root.path("/etc/kestrel/kestrel.yaml").write_text(CONFIG.replace("}\n", f", netns: {ns}}}\n"))
    nodes = [
        registry.Node(
            f"node{i:03d}", f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}", IPv4Address(f"10.20.1.{i}"), "default", "compute"
        )
        for i in range(1, count + 1)
    ]
    root.path(registry.REGISTRY_PATH).write_text(registry.format_registry(nodes))
    manifest = {"name": "default", "version": "2", "root": "/srv/kestrel/images/default.versions/2"}
    root.path("/var/lib/kestrel/images").mkdir(parents=True)
    root.path("/var/lib/kestrel/images/default.json").write_text(json.dumps(manifest))
    now = time.time()
    access, dhcp = [], []
    for b in range(boots):
        at = now - (boots - b) * 600
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
        local = time.strftime("%b %e %H:%M:%S", time.localtime(at))
        for n in nodes:
            dhcp.append(f"{local} dnsmasq-dhcp[7]: DHCPACK(br0) {n.ip} {n.mac} {n.name}\n")
            for path in ("/boot/default.ipxe", "/images/default/1/vmlinuz", "/images/default/1/initrd.img"):
                access.append(f'{n.ip} - - [{stamp}] "GET {path} HTTP/1.1" 200 100 {UA}\n')
            access.append(f'{n.ip} - - [{stamp}] "GET /status/mounted HTTP/1.1" 200 8 "-" "Wget"\n')
    logs = root.path("/var/log/kestrel")
    logs.mkdir(parents=True)
    (logs / "nginx-access.log").write_text("".join(access))
    (logs / "dnsmasq.log").write_text("".join(dhcp))
    answer = probes.Answer(
        "id", 100.0, (0.1, 0.2, 0.3), probes.nodestate.Facts(2, 1000, "/srv/kestrel/images/default.versions/1")
    )
    found: probes.Probes = {}
    for n in nodes:
        found = probes.answered(found, n.mac, now, answer)
    root.path(probes.PROBES_PATH).write_bytes(probes.format_probes(found))
    root.path("/root/.ssh").mkdir(parents=True)
    runner.run(ssh.keygen_argv(str(root.path("/root/.ssh/id_ed25519")), "bench"))
    return root


def cli(root: Sysroot, *args: str) -> float:
    root.path(probes.PROBES_PATH).touch()  # as a running monitor keeps it: status reads the probes
    argv = [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(root.root), *args]
    began = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return took


def latencies(root: Sysroot, count: int, events: int) -> list[float]:
    """Seconds from a boot event written to a log until the running monitor's status.json shows it."""
    argv = [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(root.root), "monitor"]
    log_path = root.path("/var/log/kestrel/bench-monitor.log")
    proc = subprocess.Popen(argv, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    page = root.path("/srv/kestrel/http/status/status.json")
    took = []
    try:
        while not page.exists():
            if proc.poll() is not None:
                raise SystemExit(f"the monitor stopped: {log_path.read_text()}")
            time.sleep(0.05)
        for i in range(events):
            n = registry.load_registry(root)[(i * 7) % count]
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            local = time.strftime("%b %e %H:%M:%S", time.localtime())
            if i % 2:
                line, log, stage = (
                    f"{local} dnsmasq-tftp[7]: sent /srv/kestrel/tftp/pxelinux.0 to {n.ip}\n",
                    "dnsmasq.log",
                    "boot-script",
                )
            else:
                line, log, stage = (
                    f'{n.ip} - - [{stamp}] "GET /images/default/2/vmlinuz HTTP/1.1" 200 9 {UA}\n',
                    "nginx-access.log",
                    "kernel",
                )
            began = time.perf_counter()
            with root.path(f"/var/log/kestrel/{log}").open("a") as f:
                f.write(line)
            while _stage(page, n.name) != stage:
                if time.perf_counter() - began > 30:
                    raise SystemExit(f"{n.name} not {stage} on the page after 30 s")
                time.sleep(0.01)
            took.append(time.perf_counter() - began)
            time.sleep(1.1)  # the next event in another second: stages derive from one-second log times
    finally:
        proc.terminate()
        proc.wait(10)
    return took


def _stage(page: Path, name: str) -> str | None:
    try:
        rows = json.loads(page.read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return None
    return next((r["stage"] for r in rows if r["name"] == name), None)


def median(fn: object, rounds: int) -> float:
    assert callable(fn)
    return statistics.median(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--boots", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=10, help="boot events for the latency")
    args = parser.parse_args()
    topo = Topology(prefix=f"kt-{os.getpid() % 4096:03x}")
    try:
        results = run(args, topo.add_netns("b"))
    finally:
        topo.destroy()
    width = max(len(name) for name, _ in results)
    print(f"{'case':<{width}}  seconds (runs: median of {args.rounds})")
    for name, took in results:
        print(f"{name:<{width}}  {took:8.3f}")


def run(args: argparse.Namespace, ns: str) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-status-") as tmp:
        big = make_tree(Path(tmp), "big", args.nodes, args.boots, ns)
        empty = make_tree(Path(tmp), "empty", 0, 0, ns)
        config = load_config(big.path("/etc/kestrel/kestrel.yaml"))
        lines = sum(1 for _ in big.path("/var/log/kestrel/nginx-access.log").open())
        rows = report.status(big, config)
        assert len(rows) == args.nodes and all(r.state == "up" and r.drift for r in rows), rows[:2]

        def compute() -> float:
            began = time.perf_counter()
            report.status(big, config)
            return time.perf_counter() - began

        results = [
            (f"status, computed in-process ({args.nodes} nodes, {lines} log lines)", median(compute, args.rounds)),
            (
                f"kestrel-nodes status --json ({args.nodes} nodes)",
                median(lambda: cli(big, "status", "--json"), args.rounds),
            ),
            (
                f"baseline: kestrel-nodes list --json ({args.nodes} nodes)",
                median(lambda: cli(big, "list", "--json"), args.rounds),
            ),
            (
                "baseline: kestrel-nodes status --json (no nodes)",
                median(lambda: cli(empty, "status", "--json"), args.rounds),
            ),
        ]
        delays = latencies(big, args.nodes, args.events)
        results += [
            (f"event -> status.json, median of {len(delays)} ({args.nodes} nodes)", statistics.median(delays)),
            (f"event -> status.json, worst of {len(delays)}", max(delays)),
            ("baseline: the monitor's poll interval", monitor.POLL),
        ]
    return results


if __name__ == "__main__":
    main()
