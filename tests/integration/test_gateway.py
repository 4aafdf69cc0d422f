"""The gateway for real, with each engine: the lab's frontend (kestrel.lab.cluster.up_frontend) runs HAProxy or
nginx in its namespace over "nodes" that are namespaces on its bridge, each with an nginx serving its name.
Nodes join and leave through kestrel-nodes, as an admin (or the lease hook) does; traffic is real HTTP from inside
the frontend's namespace."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import eventually, need_root
from tests.gatewaynodes import URL, Gateway, browse, fetch, fetch_for, gateway_lab, nodes_of
from tests.treestate import kestrel


@pytest.fixture(params=[("haproxy", "roundrobin"), ("nginx", "leastconn")], ids=["haproxy", "nginx"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    need_root()
    with gateway_lab(tmp_path / "fe", *request.param) as gw:
        yield gw


def nodes_cli(gw: Gateway, *args: str) -> None:
    proc = kestrel("nodes", gw.root.root, *args)
    assert proc.returncode == 0, proc.stderr


def status_cli(gw: Gateway) -> dict[str, dict[str, object]]:
    """kestrel-gateway status --json, as the admin reads it."""
    proc = kestrel("gateway", gw.root.root, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row for row in json.loads(proc.stdout)}


def test_gateway_spreads_drops_includes_and_empties(gateway: Gateway) -> None:
    gw, ns = gateway, gateway.ns
    for index in (1, 2, 3):
        node = gw.nodes.start(index)
        nodes_cli(gw, "add", "--mac", node.mac, "--ip", node.ip, "--name", node.name, "--group", "web")
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
            assert eventually(lambda: gw.health("node02") == "DOWN", 3.0, 0.1), status_cli(gw)
        # Passive (nginx) or active: traffic goes elsewhere within 3 s.
        waited = 3.0 - (time.monotonic() - stopped)
        assert "node02" not in nodes_of(fetch_for(ns, URL, 1.0, after=max(waited, 0.0)))
        answers = loop.result()
    assert answers and all(r.status == 200 for r in answers), Counter(r.status for r in answers)
    assert status_cli(gw)["node02"]["errors"] or gw.service == "haproxy"  # nginx saw its failed try

    # A node registered in the group gets traffic within 5 s, without a restart and with no failed request (timed
    # in this process: a program's start under a loaded CI machine is not the gateway's time).
    node4 = gw.nodes.start(4)
    with ThreadPoolExecutor(1) as pool:
        loop = pool.submit(fetch_for, ns, URL, 4.0)
        time.sleep(0.5)
        added = time.monotonic()
        gw.register(node4)
        assert eventually(lambda: "node04" in nodes_of(fetch_for(ns, URL, 0.3)), 5.0 - (time.monotonic() - added), 0.05)
        answers = loop.result()
    assert all(r.status == 200 for r in answers), Counter(r.status for r in answers)
    assert gw.master() == master
    assert status_cli(gw)["node04"]["requests"]

    # Without any node of the group: a clear 503 page at once, not a hang.
    for name in ("node01", "node02", "node03", "node04"):
        gw.remove(name)
    # Until the workers of the previous configurations have finished (nginx's graceful reload), one may still
    # answer from node04: wait for three 503s in a row.
    assert eventually(lambda: all(r.status == 503 for r in fetch(ns, URL, 3)), 5.0)
    started = time.monotonic()
    answer = fetch(ns, URL, 1)[0]
    assert answer.status == 503 and "No web server of group <b>web</b>" in answer.body
    assert time.monotonic() - started < 2.0
    page = browse(ns, URL, gw.root.path("/tmp/chromium"))
    assert "<title>503 Service Unavailable</title>" in page and "<b>web</b> of cluster gwlab" in page
    assert gw.master() == master
