"""The gateway's test bed, for tests/integration/test_gateway.py and bench/bench_gateway.py: the lab's frontend
(kestrel.lab.cluster.up_frontend) with the gateway module on, web "nodes" that are network namespaces on its bridge
each with an nginx serving a page that is its name, and an HTTP client that runs inside a namespace."""

from __future__ import annotations

import contextlib
import http.client
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kestrel import runner, supervisor
from kestrel.config import CONFIG_PATH, Config, load_config
from kestrel.frontend import node_changes
from kestrel.gateway.backends import select_backends
from kestrel.gateway.status import gateway_status
from kestrel.lab import cluster as lab
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot

CONFIG = """\
cluster: {{name: gwlab, domain: cluster.local}}
network: {{interface: eth1, address: 10.10.0.1/24, dhcp_range: [10.10.0.100, 10.10.0.199]}}
modules: [core, nfsroot, sshd, web, gateway]
gateway: {{group: web, engine: {engine}, balance: {balance}}}
"""
URL = "http://10.10.0.1:8080/"

NGINX_CONF = """\
daemon off;
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {ip}:80;
        root {dir}/www;
        default_type text/plain;
    }}
}}
"""


@dataclass(frozen=True)
class WebNode:
    name: str
    mac: str
    ip: str
    netns: str


@dataclass
class WebNodes:
    """Nodes NAME=nodeNN at 10.10.0.(10+N) on BRIDGE (inside the frontend's namespace FRONTEND)."""

    root: Sysroot
    topo: Topology
    frontend: str
    bridge: str

    def node(self, index: int) -> WebNode:
        return WebNode(
            f"node{index:02d}", f"52:54:00:77:00:{index:02x}", f"10.10.0.{10 + index}", self.topo.name(f"n{index}")
        )

    def start(self, index: int) -> WebNode:
        """Node INDEX's nginx, in its namespace (made, and wired to the bridge, the first time)."""
        node = self.node(index)
        if not netns.exists(node.netns):
            self.topo.add_netns(f"n{index}")
            self.topo.add_veth(self.frontend, f"v{index}", node.netns, f"e{index}", self.bridge, f"{node.ip}/24")
        folder = self.root.path(f"/var/lib/webnodes/{node.name}")
        (folder / "www").mkdir(parents=True, exist_ok=True)
        (folder / "www/index.html").write_text(f"{node.name}\n")
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=folder, ip=node.ip))
        nginx = runner.which("nginx") or "nginx"
        supervisor.start(self.root, f"web-{node.name}", [nginx, "-c", str(conf), "-e", "stderr"], netns=node.netns)
        return node

    def running(self, index: int) -> bool:
        return supervisor.find(self.root, f"web-node{index:02d}") is not None

    def stop(self, index: int) -> None:
        supervisor.stop(self.root, f"web-node{index:02d}")


@dataclass
class Gateway:
    """The frontend at ROOT (namespace NS) running the gateway with SERVICE (haproxy or nginx) over NODES."""

    root: Sysroot
    ns: str
    service: str
    nodes: WebNodes

    @property
    def config(self) -> Config:
        return load_config(self.root.path(CONFIG_PATH))

    def register(self, node: WebNode) -> None:
        """The node joins group web (kestrel-nodes add, in this process)."""
        node_changes.add(self.root, self.config, node.mac, name=node.name, ip=node.ip, group="web")

    def remove(self, name: str) -> None:
        node_changes.remove(self.root, self.config, [name])

    def master(self) -> int:
        record = supervisor.find(self.root, self.service)
        assert record is not None, f"{self.service} is not running"
        return record.pid

    def health(self, node: str) -> str:
        """What kestrel-gateway status says of NODE's health."""
        config = self.config
        chosen = select_backends(config, registry.load_registry(self.root), nodestate.load_states(self.root))
        return {s.node: s.health for s in gateway_status(self.root, config, chosen)}[node]


@contextlib.contextmanager
def gateway_lab(folder: Path, engine: str, balance: str = "roundrobin") -> Iterator[Gateway]:
    """A frontend tree in FOLDER with the gateway on ENGINE, up in namespaces that always go away."""
    root = Sysroot(folder)
    config = root.path(CONFIG_PATH)
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG.format(engine=engine, balance=balance))
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    topo = Topology(f"kt-{secrets.token_hex(2)[:3]}")
    problems: list[str] = []
    try:
        lab.up_frontend(root, prefix)
        ns, bridge = f"{prefix}fe", f"{prefix}br0"
        yield Gateway(root, ns, engine, WebNodes(root, topo, ns, bridge))
    finally:
        problems = lab.down(root) + topo.destroy()
    assert problems == [], problems


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (refused, reset, timed out)
    body: str
    seconds: float

    @property
    def node(self) -> str:
        return self.body.strip() if self.status == 200 else ""


def fetch(ns: str, url: str, count: int, timeout: float = 3.0) -> list[Answer]:
    """COUNT GET requests to URL one after the other, each on a new connection, from inside namespace NS."""
    return netns.call_in(ns, _requests, url, timeout, count=count)


def fetch_for(ns: str, url: str, seconds: float, after: float = 0.0, timeout: float = 3.0) -> list[Answer]:
    """GET requests to URL for SECONDS (a bounded loop), starting AFTER seconds from now."""
    time.sleep(after)
    return netns.call_in(ns, _requests, url, timeout, until=time.monotonic() + seconds)


def nodes_of(answers: list[Answer]) -> set[str]:
    return {a.node for a in answers if a.node}


def _requests(url: str, timeout: float, count: int | None = None, until: float | None = None) -> list[Answer]:
    parts = urlsplit(url)
    out: list[Answer] = []
    while (count is None or len(out) < count) and (until is None or time.monotonic() < until):
        started = time.monotonic()
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", parts.path or "/")
            response = conn.getresponse()
            out.append(Answer(response.status, response.read().decode(errors="replace"), time.monotonic() - started))
        except OSError:
            out.append(Answer(0, "", time.monotonic() - started))
        finally:
            conn.close()
    return out


def browse(ns: str, url: str, profile: Path) -> str:
    """The DOM of URL as headless Chromium renders it, from inside namespace NS (PROFILE: a fresh folder)."""
    chromium = runner.which("chromium") or "chromium"
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--dump-dom", url]
    return runner.run(runner.netns_argv(ns, argv), timeout=60).stdout
