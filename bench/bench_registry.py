"""Benchmark: registering 10,000 leases and reconfiguring a frontend with 10,000 nodes, against baselines.

Run: .venv/bin/python bench/bench_registry.py [--nodes N]. Prints a table; every case runs the real
programs (python -m kestrel.cli.*) on a fresh --root tree under /tmp, no service is started.
Baselines in the same run: Python start + imports, the same commands on an empty cluster.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

from kestrel.config import Config, Network
from kestrel.nodes import state as nodestate
from kestrel.nodes.leases import parse_leases
from kestrel.nodes.registry import load_registry, register_leases
from kestrel.sysroot import Sysroot

REPO = Path(__file__).resolve().parent.parent
CONFIG = "network: {interface: eth1, address: 10.20.0.1/16, dhcp_range: [10.20.64.0, 10.20.127.255]}\n"


def make_tree(parent: Path, name: str) -> Sysroot:
    root = parent / name
    shutil.copytree(REPO / "etc-kestrel", root / "etc" / "kestrel")
    (root / "etc" / "kestrel" / "kestrel.yaml").write_text(CONFIG)
    return Sysroot(root)


def leases_text(count: int) -> str:
    return "".join(
        f"1795000000 52:54:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01 "
        f"{IPv4Address(int(IPv4Address('10.20.64.1')) + i)} * *\n"
        for i in range(count)
    )


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file() and p.name != "lock"
    }


def timed(root: Sysroot, argv: list[str]) -> tuple[float, int]:
    """Seconds of one run of ARGV and how many files under ROOT it wrote (created or replaced)."""
    before = files(root.root)
    began = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed: {proc.stderr.strip()}")
    after = files(root.root)
    return took, sum(1 for path, stamp in after.items() if before.get(path) != stamp)


def nodes_cli(root: Sysroot, *args: str) -> list[str]:
    return [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(root.root), "-q", *args]


def reconfigure(root: Sysroot) -> list[str]:
    return [sys.executable, "-m", "kestrel.cli.reconfigure", "--root", str(root.root), "-q", "--frontend"]


def all_up(root: Sysroot) -> None:
    """Every node up with facts, so the hostfiles list all of them (the worst case for reconfigure)."""
    states = {n.mac: nodestate.NodeState(nodestate.State.UP, 1795000000, 4, 3923) for n in load_registry(root)}
    root.path(nodestate.STATE_PATH).write_bytes(nodestate.format_states(states))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    count = parser.parse_args().nodes
    rows: list[tuple[str, int, float, int | str, str]] = []
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp:
        work = Path(tmp)
        (work / "leases").write_text(leases_text(count))
        (work / "empty.leases").write_text("")

        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import kestrel.cli.nodes"], check=True, timeout=60)
        rows.append(("baseline: python start + imports", 0, time.perf_counter() - began, "-", ""))

        config = Config(
            network=Network.model_validate({"address": "10.20.0.1/16", "dhcp_range": ["10.20.64.0", "10.20.127.255"]})
        )
        found, _ = parse_leases((work / "leases").read_text())
        began = time.perf_counter()
        register_leases([], config, found)
        rows.append(("register_leases() in process (pure)", count, time.perf_counter() - began, "-", ""))

        empty = make_tree(work, "empty")
        no_leases = str(work / "empty.leases")
        took, wrote = timed(empty, nodes_cli(empty, "--register", "--no-verify", "--leases", no_leases))
        rows.append(("baseline: --register, empty leases", 0, took, wrote, ""))
        took, wrote = timed(empty, reconfigure(empty))
        rows.append(("baseline: reconfigure --frontend, no node", 0, took, wrote, ""))

        big = make_tree(work, "big")
        took, wrote = timed(big, nodes_cli(big, "--register", "--no-verify", "--leases", str(work / "leases")))
        rows.append(("kestrel-nodes --register --no-verify", count, took, wrote, "<= 1 s"))
        took, wrote = timed(big, nodes_cli(big, "--register", "--no-verify", "--leases", str(work / "leases")))
        rows.append(("  same again (no-op)", count, took, wrote, "0 files"))
        all_up(big)
        took, wrote = timed(big, reconfigure(big))
        rows.append(("kestrel-reconfigure --frontend (all up)", count, took, wrote, "<= 2 s"))
        took, wrote = timed(big, reconfigure(big))
        rows.append(("  same again (no-op)", count, took, wrote, "0 files"))
        took, wrote = timed(big, nodes_cli(big, "lease-event", "add", "52:54:00:ff:ff:01", "10.20.120.1"))
        rows.append(("lease-event add of a new MAC", count + 1, took, wrote, "<= 10 s"))

    print(f"{'case':<44} {'nodes':>6} {'seconds':>8} {'files':>6}  goal      ok")  # noqa: T201
    for case, nodes_n, seconds, files, goal in rows:
        print(f"{case:<44} {nodes_n:>6} {seconds:>8.3f} {files!s:>6}  {goal:<8}  {verdict(goal, seconds, files)}")  # noqa: T201


def verdict(goal: str, seconds: float, wrote: int | str) -> str:
    if goal.startswith("<="):
        return "yes" if seconds <= float(goal.split()[1]) else "NO"
    if goal == "0 files":
        return "yes" if wrote == 0 else "NO"
    return ""


if __name__ == "__main__":
    main()
