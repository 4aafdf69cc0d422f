"""The gateway for real, with each engine: the lab's frontend (kestrel.lab.cluster.up_frontend) runs HAProxy or
nginx in its namespace over "nodes" that are namespaces on its bridge, each with an nginx serving its name.
Nodes join and leave through kestrel-nodes, as an admin (or the lease hook) does; traffic is real HTTP from inside
the frontend's namespace."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from kestrel import supervisor
from kestrel.config import CONFIG_PATH, load_config
from kestrel.frontend import node_changes
from kestrel.gateway.backends import select_backends
from kestrel.gateway.status import gateway_status
from kestrel.lab import cluster as lab
from kestrel.net.netns import Topology
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot
from tests.conftest import eventually, need_root
from tests.gatewaynodes import WebNodes, fetch, fetch_for, nodes_of
from tests.treestate import kestrel

CONFIG = """\
cluster: {{name: gwlab, domain: cluster.local}}
network: {{interface: eth1, address: 10.10.0.1/24, dhcp_range: [10.10.0.100, 10.10.0.199]}}
modules: [core, nfsroot, sshd, web, gateway]
gateway: {{group: web, engine: {engine}, balance: {balance}}}
"""
URL = "http://10.10.0.1:8080/"


@dataclass
class Gateway:
    root: Sysroot
    ns: str
    service: str
    nodes: WebNodes

    def nodes_cli(self, *args: str) -> None:
        proc = kestrel("nodes", self.root.root, *args)
        assert proc.returncode == 0, proc.stderr

    def status(self) -> dict[str, dict[str, object]]:
        """kestrel-gateway status --json, as the admin reads it."""
        proc = kestrel("gateway", self.root.root, "status", "--json")
        assert proc.returncode == 0, proc.stderr
        return {row["node"]: row for row in json.loads(proc.stdout)}

    def health(self, node: str) -> str:
        """What kestrel-gateway status says of NODE's health, asked in this process (polled every 0.1 s)."""
        config = load_config(self.root.path(CONFIG_PATH))
        chosen = select_backends(config, registry.load_registry(self.root), nodestate.load_states(self.root))
        return {s.node: s.health for s in gateway_status(self.root, config, chosen)}[node]

    def master(self) -> int:
        record = supervisor.find(self.root, self.service)
        assert record is not None
        return record.pid


@pytest.fixture(params=[("haproxy", "roundrobin"), ("nginx", "leastconn")], ids=["haproxy", "nginx"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    need_root()
    engine, balance = request.param
    root = Sysroot(tmp_path / "fe")
    config = root.path("/etc/kestrel/kestrel.yaml")
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG.format(engine=engine, balance=balance))
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    topo = Topology(f"kt-{secrets.token_hex(2)[:3]}")
    try:
        lab.up_frontend(root, prefix)
        ns, bridge = f"{prefix}fe", f"{prefix}br0"
        yield Gateway(root, ns, engine, WebNodes(root, topo, ns, bridge))
    finally:
        problems = lab.down(root) + topo.destroy()
        assert problems == []


def test_gateway_spreads_drops_includes_and_empties(gateway: Gateway) -> None:
    gw, ns = gateway, gateway.ns
    for index in (1, 2, 3):
        node = gw.nodes.start(index)
        gw.nodes_cli("add", "--mac", node.mac, "--ip", node.ip, "--name", node.name, "--group", "web")
    assert eventually(lambda: {"node01", "node02", "node03"} <= nodes_of(fetch(ns, URL, 6)), 10)
    master = gw.master()

    # 100 requests, each backend within 10 % of even.
    counts = Counter(r.node for r in fetch(ns, URL, 100))
    assert sum(counts.values()) == 100 and all(30 <= counts[n] <= 37 for n in ("node01", "node02", "node03")), counts

    # A backend whose server stops drops out within 3 s, and no request fails meanwhile.
    with ThreadPoolExecutor(1) as pool:
        loop = pool.submit(fetch_for, ns, URL, 4.0)
        time.sleep(0.5)
        stopped = time.monotonic()
        gw.nodes.stop(2)
        if gw.service == "haproxy":  # active checks: the stats say DOWN
            assert eventually(lambda: gw.health("node02") == "DOWN", 3.0, 0.1), gw.status()
        # Passive (nginx) or active: traffic goes elsewhere within 3 s.
        waited = 3.0 - (time.monotonic() - stopped)
        assert "node02" not in nodes_of(fetch_for(ns, URL, 1.0, after=max(waited, 0.0)))
        answers = loop.result()
    assert answers and all(r.status == 200 for r in answers), Counter(r.status for r in answers)
    assert gw.status()["node02"]["errors"] or gw.service == "haproxy"  # nginx saw its failed try

    # A node registered in the group gets traffic within 5 s, without a restart and with no failed request.
    node4 = gw.nodes.start(4)
    with ThreadPoolExecutor(1) as pool:
        loop = pool.submit(fetch_for, ns, URL, 4.0)
        time.sleep(0.5)
        added = time.monotonic()
        gw.nodes_cli("add", "--mac", node4.mac, "--ip", node4.ip, "--name", node4.name, "--group", "web")
        assert eventually(lambda: "node04" in nodes_of(fetch_for(ns, URL, 0.3)), 5.0 - (time.monotonic() - added), 0.05)
        answers = loop.result()
    assert all(r.status == 200 for r in answers), Counter(r.status for r in answers)
    assert gw.master() == master
    assert gw.status()["node04"]["requests"]

    # Without any node of the group: a clear 503 page at once, not a hang.
    config = load_config(gw.root.path(CONFIG_PATH))
    for name in ("node01", "node02", "node03", "node04"):
        node_changes.remove(gw.root, config, name)
    assert eventually(lambda: fetch(ns, URL, 1)[0].status == 503, 5.0)
    started = time.monotonic()
    answer = fetch(ns, URL, 1)[0]
    assert answer.status == 503 and "No web server of group <b>web</b>" in answer.body
    assert time.monotonic() - started < 1.0
    assert gw.master() == master
