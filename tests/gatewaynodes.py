"""Web "nodes" for the gateway's tests and bench/bench_gateway.py: each a network namespace on the frontend's
bridge with its own nginx serving a page that is its name; and an HTTP client that runs inside a namespace."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from kestrel import runner, supervisor
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot

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

    def start(self, index: int) -> WebNode:
        name, ip = f"node{index:02d}", f"10.10.0.{10 + index}"
        ns = (
            netns.exists(self.topo.name(f"n{index}"))
            and self.topo.name(f"n{index}")
            or self.topo.add_netns(f"n{index}")
        )
        if not runner.run(["ip", "-n", ns, "addr", "show"]).stdout.count(ip):
            self.topo.add_veth(self.frontend, f"v{index}", ns, f"e{index}", master_a=self.bridge, address_b=f"{ip}/24")
        folder = self.root.path(f"/var/lib/webnodes/{name}")
        (folder / "www").mkdir(parents=True, exist_ok=True)
        (folder / "www/index.html").write_text(f"{name}\n")
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=folder, ip=ip))
        nginx = runner.which("nginx") or "nginx"
        supervisor.start(self.root, f"web-{name}", [nginx, "-c", str(conf), "-e", "stderr"], netns=ns)
        return WebNode(name, f"52:54:00:77:00:{index:02x}", ip, ns)

    def stop(self, index: int) -> None:
        supervisor.stop(self.root, f"web-node{index:02d}")


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
