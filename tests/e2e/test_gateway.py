"""The gateway in the booted lab: both nodes run the web module's nginx, and the gateway on the frontend's cluster
address (port 8080, group nodes.default_group) answers from one, then the other."""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path

from kestrel.config import CONFIG_PATH, load_config
from kestrel.sysroot import Sysroot
from tests.e2e.lab import NODES, ROOT, kestrel
from tests.gatewaynodes import browse, fetch

HEADING = re.compile(r"<h1>([a-z0-9-]+)</h1>")


def test_two_nodes_serve_through_the_gateway_alternately(lab: str) -> None:
    config = load_config(Sysroot(ROOT).path(CONFIG_PATH))
    assert config.network.netns
    ns, url = config.network.netns, f"http://{config.network.ip}:{config.gateway.port}/"
    answers = fetch(ns, url, 8)
    assert [a.status for a in answers] == [200] * 8, answers
    names = [m.group(1) if (m := HEADING.search(a.body)) else a.body for a in answers]
    assert set(names) == set(NODES) and all(a != b for a, b in zip(names, names[1:], strict=False)), names
    with tempfile.TemporaryDirectory() as profile:
        page = browse(ns, url, Path(profile))
    assert re.search(r"<title>node0[12]</title>", page) and "of cluster lab." in page, page
    rows = json.loads(kestrel("kestrel-gateway", "status", "--json").stdout)
    assert {r["name"]: r["health"] for r in rows} == dict.fromkeys(NODES, "UP"), rows
    assert Counter({r["name"]: r["requests"] for r in rows}) >= Counter(dict.fromkeys(NODES, 4)), rows
