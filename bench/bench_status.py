"""Benchmark: `kestrel-nodes status` for 50 registered nodes (goal: under 1 s), against baselines.

Run: .venv/bin/python bench/bench_status.py [--nodes N] [--boots B]. Prints a table. A fresh --root tree under
/tmp holds N registered nodes, a published image, the boot logs of B boots of every node (nginx's access log,
dnsmasq's log) and a probe record per node, as a monitor leaves them; no service and no SSH (the monitor is
taken as running, so status reads its probes). Baselines in the same run: `kestrel-nodes list` (registry and
state only) on the same tree, and status on an empty cluster.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

from kestrel.config import load_config
from kestrel.nodes import probes, registry
from kestrel.status import report
from kestrel.sysroot import Sysroot

REPO = Path(__file__).resolve().parent.parent
CONFIG = "network: {interface: eth1, address: 10.20.0.1/16, dhcp_range: [10.20.64.0, 10.20.127.255]}\n"
UA = '"-" "iPXE/1.0.0+git-20190125.36a4c85-5.1"'


def make_tree(parent: Path, name: str, count: int, boots: int) -> Sysroot:
    root = Sysroot(parent / name)
    shutil.copytree(REPO / "etc-kestrel", root.path("/etc/kestrel"))
    root.path("/etc/kestrel/kestrel.yaml").write_text(CONFIG)
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
    return root


def cli(root: Sysroot, *args: str) -> float:
    argv = [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(root.root), *args]
    began = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return took


def median(fn: object, rounds: int) -> float:
    assert callable(fn)
    return statistics.median(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--boots", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-status-") as tmp:
        big = make_tree(Path(tmp), "big", args.nodes, args.boots)
        empty = make_tree(Path(tmp), "empty", 0, 0)
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
    width = max(len(name) for name, _ in results)
    print(f"{'case':<{width}}  median of {args.rounds}")
    for name, took in results:
        print(f"{name:<{width}}  {took * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
