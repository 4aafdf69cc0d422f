"""Benchmark: the firewall module's grant and revoke latency after a registry change, against the same change
without the module.

Run (root): .venv/bin/python bench/bench_firewall.py [--rounds N]. Namespaces kt-bfw* (a frontend with nftables
and nfs-ganesha, one "node" whose MAC is set), removed at the end. Per round: `add` of the node, then NFSv3
NULL calls on new connections until one is answered (grant); a kept connection, `remove`, then NULL calls on it
every 10 ms until one goes unanswered (revoke: the time of the first call that got no answer). Baseline in the
same run: add and remove on a tree without the module (no nft). Goal (issue 16): both within 1 s.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kestrel import runner, supervisor  # noqa: E402
from kestrel.config import load_config  # noqa: E402
from kestrel.frontend import nfs, node_changes  # noqa: E402
from kestrel.frontend.reconfigure import reconfigure_frontend  # noqa: E402
from kestrel.net import netns  # noqa: E402
from kestrel.net.netns import Topology  # noqa: E402
from kestrel.sysroot import Sysroot  # noqa: E402
from tests.integration.test_firewall import FE_IP, NODE_IP, NODE_MAC, RpcConnection, wait_port  # noqa: E402
from tests.unit.test_frontend import publish_fake_image  # noqa: E402


def make_tree(parent: Path, name: str, modules: str, extra: str = "") -> Sysroot:
    root = Sysroot(parent / name)
    shutil.copytree(REPO / "etc-kestrel", root.path("/etc/kestrel/kestrel.yaml"))
    path = root.path("/etc/kestrel/kestrel.yaml")
    text = path.read_text().replace("server: kernel", "server: ganesha").replace("modules: [core,", modules)
    path.write_text(text.replace("interface: eth1", f"interface: {extra or 'eth1'}"))
    publish_fake_image(root, "default", "1")
    return root


def answered(ns: str) -> bool:
    """A NULL call on a new connection answered (False: refused, dropped or no answer within 50 ms)."""
    try:
        conn = RpcConnection(ns, timeout=0.05)
    except OSError:
        return False
    try:
        return conn.null(0.05)
    finally:
        conn.close()


def grant(root: Sysroot, ns: str) -> tuple[float, float]:
    """Seconds of the add, and from its start until the node's first answered call."""
    began = time.perf_counter()
    node_changes.add(root, load_config(root.path("/etc/kestrel/kestrel.yaml")), NODE_MAC, ip=NODE_IP)
    took = time.perf_counter() - began
    while not answered(ns):
        if time.perf_counter() - began > 10:
            raise SystemExit("grant: no answer within 10 s")
        time.sleep(0.01)
    return took, time.perf_counter() - began


def revoke(root: Sysroot, ns: str) -> tuple[float, float]:
    """Seconds of the remove, and from its start until a call on the kept connection went unanswered."""
    kept = RpcConnection(ns)
    try:
        if not kept.null(1):
            raise SystemExit("revoke: the kept connection got no answer before the remove")
        began = time.perf_counter()
        node_changes.remove(root, load_config(root.path("/etc/kestrel/kestrel.yaml")), ["node01"])
        took = time.perf_counter() - began
        while True:
            sent = time.perf_counter()
            if not kept.null(0.2):
                return took, sent - began
            if sent - began > 10:
                raise SystemExit("revoke: still answered 10 s after the remove")
            time.sleep(0.01)
    finally:
        kept.close()


def baseline(parent: Path, rounds: int) -> tuple[list[float], list[float]]:
    root = make_tree(parent, "plain", "modules: [core,")
    config = load_config(root.path("/etc/kestrel/kestrel.yaml"))
    adds, removes = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        node_changes.add(root, config, NODE_MAC, ip=NODE_IP)
        adds.append(time.perf_counter() - began)
        began = time.perf_counter()
        node_changes.remove(root, config, ["node01"])
        removes.append(time.perf_counter() - began)
    return adds, removes


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    topo = Topology("kt-bfw")
    parent = Path(tempfile.mkdtemp(prefix="kestrel-bench-firewall-"))
    root: Sysroot | None = None
    try:
        fe = topo.add_netns("fe")
        bridge = topo.add_bridge(fe, "br", f"{FE_IP}/24")
        root = make_tree(parent, "fw", "modules: [firewall, core,", f"{bridge}\n  netns: {fe}")
        reconfigure_frontend(
            root, load_config(root.path("/etc/kestrel/kestrel.yaml")), root.path("/etc/kestrel/kestrel.yaml")
        )
        supervisor.start(root, "nfs-ganesha", nfs.ganesha_foreground_argv(root), netns=fe, private_run=True)
        if not wait_port(fe, FE_IP, 2049):
            raise SystemExit("nfs-ganesha did not start")
        ns = topo.add_netns("nd")
        _, dev = topo.add_veth(fe, "ndp", ns, "nde", master_a=bridge)
        runner.run(["ip", "-n", ns, "link", "set", dev, "address", NODE_MAC])
        runner.run(["ip", "-n", ns, "addr", "add", f"{NODE_IP}/24", "dev", dev])
        netns.call_in(ns, socket.gethostname)  # the namespace is usable
        grants, revokes = [], []
        for _ in range(args.rounds):
            grants.append(grant(root, ns))
            revokes.append(revoke(root, ns))
        plain_adds, plain_removes = baseline(parent, args.rounds)
    finally:
        if root is not None:
            supervisor.stop(root, "nfs-ganesha")
        topo.destroy()
        shutil.rmtree(parent, ignore_errors=True)
    rows = [
        ("add without the module (baseline)", plain_adds),
        ("add with the module", [g[0] for g in grants]),
        ("grant: add start -> first answered call", [g[1] for g in grants]),
        ("remove without the module (baseline)", plain_removes),
        ("remove with the module", [r[0] for r in revokes]),
        ("revoke: remove start -> first unanswered call", [r[1] for r in revokes]),
    ]
    print(f"{'case':<48} {'median s':>9} {'max s':>7}  goal")  # noqa: T201
    for case, values in rows:
        goal = "< 1 s" if case.startswith(("grant", "revoke")) else ""
        print(f"{case:<48} {statistics.median(values):>9.3f} {max(values):>7.3f}  {goal}")  # noqa: T201


if __name__ == "__main__":
    main()
