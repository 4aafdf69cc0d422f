"""100 kestrel-nodes processes at once (add, lease hook, --register): they serialise on the lock, none is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kestrel.sysroot import Sysroot
from tests.conftest import write_config

CONFIG = """\
network: {interface: eth1, address: 10.20.0.1/16, dhcp_range: [10.20.100.0, 10.20.199.255]}
"""


def test_hundred_parallel_writers_lose_nothing(tree: Sysroot, tmp_path: Path) -> None:
    write_config(tree, CONFIG)
    base = [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(tree.root), "-q"]
    jobs: list[list[str]] = []
    for i in range(100):
        mac, leased = f"52:54:00:cc:00:{i:02x}", f"10.20.100.{i + 1}"
        if i % 3 == 0:
            jobs.append([*base, "add", "--mac", mac, "--name", f"man{i:03d}", "--ip", f"10.20.5.{i + 1}"])
        elif i % 3 == 1:
            jobs.append([*base, "lease-event", "add", mac, leased])
        else:
            leases = tmp_path / f"leases{i}"
            leases.write_text(f"1795000000 {mac} {leased} * *\n")
            jobs.append([*base, "--register", "--no-verify", "--leases", str(leases)])
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in jobs]
    failures = []
    for argv, p in zip(jobs, procs, strict=True):
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            failures.append((argv[-4:], p.returncode, err))
    assert failures == []

    listed = json.loads(subprocess.run([*base, "list", "--json"], capture_output=True, text=True, timeout=60).stdout)
    assert sorted(n["mac"] for n in listed) == sorted(f"52:54:00:cc:00:{i:02x}" for i in range(100))
    assert len({n["name"] for n in listed}) == len({n["ip"] for n in listed}) == 100
    auto = sorted(n["name"] for n in listed if not n["name"].startswith("man"))
    assert auto == [f"node{i:02d}" for i in range(1, 67)], "pattern names are dense: first free index each time"
    hosts = tree.path("/etc/hosts").read_text()
    assert all(f"\t{n['name']}.cluster.local " in hosts for n in listed)
    openmpi = tree.path("/etc/kestrel/hostfiles/openmpi").read_text()
    assert sum(line.endswith("slots=1") for line in openmpi.splitlines()) == 33  # the lease-event ones are up
