"""The gateway's files, rendered from the config and the registry: HAProxy's or nginx's config, the 503 page,
HAProxy's systemd drop-in; the command line of a supervised HAProxy (the lab)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kestrel import runner
from kestrel.config import Config, GatewayEngine
from kestrel.errors import InputError
from kestrel.gateway.backends import group_of, is_enabled, select_backends
from kestrel.nodes.registry import Node
from kestrel.nodes.state import States
from kestrel.plan import Action, Desired, Plan
from kestrel.sysroot import LOG_DIR, RUN_DIR, Sysroot, encode
from kestrel.templates import render

HAPROXY_PATH = "/etc/haproxy/kestrel-gateway.cfg"
# Debian's haproxy.service reads $EXTRAOPTS: the drop-in adds Kestrel's config after the admin's haproxy.cfg.
HAPROXY_DROPIN = "/etc/systemd/system/haproxy.service.d/kestrel.conf"
NGINX_PATH = "/etc/nginx/conf.d/kestrel-gateway.conf"
PAGE_DIR = "/srv/kestrel/gateway"
PAGE_503 = f"{PAGE_DIR}/503.html"
STATS_SOCKET = f"{RUN_DIR}/haproxy.sock"
NGINX_LOG = f"{LOG_DIR}/gateway-access.log"
BACKEND_NAME = "kestrel-web"  # HAProxy's backend section (kestrel-gateway status reads its rows)

# Files that go when the module is off or the engine changes.
OWNED = [
    (str(Path(HAPROXY_PATH).parent), Path(HAPROXY_PATH).name),
    (str(Path(HAPROXY_DROPIN).parent), Path(HAPROXY_DROPIN).name),
    (str(Path(NGINX_PATH).parent), Path(NGINX_PATH).name),
    (PAGE_DIR, "*.html"),
]


def service_of(config: Config) -> str:
    """The service that serves the gateway: haproxy, or the frontend's nginx."""
    return "haproxy" if config.gateway.engine is GatewayEngine.HAPROXY else "nginx"


def listen_addresses(config: Config) -> list[str]:
    return [str(a) for a in config.gateway.listen] or [str(config.network.ip)]


def nginx_include(root: Sysroot, config: Config) -> str:
    """What the lab's standalone nginx.conf includes for the gateway ('' when nginx does not serve it)."""
    wanted = is_enabled(config) and config.gateway.engine is GatewayEngine.NGINX
    return root.sys(NGINX_PATH) if wanted else ""


def desired_files(root: Sysroot, config: Config, nodes: list[Node], states: States) -> list[Desired]:
    """The gateway's files when the module is on: they follow the registry, so every node change re-renders them
    and reloads the engine (a reload keeps open connections)."""
    if not is_enabled(config):
        return []
    gw = config.gateway
    ctx = dict(
        config=config,
        gateway=gw,
        group=group_of(config),
        backends=select_backends(config, nodes, states),
        listen=listen_addresses(config),
        page=root.sys(PAGE_503),
        stats_socket=root.sys(STATS_SOCKET),
        access_log=root.sys(NGINX_LOG),
        backend_name=BACKEND_NAME,
    )
    service = service_of(config)
    out = [Desired(PAGE_503, encode(render(root, "gateway-503.html", **ctx)), on_change=(service, Action.RELOAD))]
    if gw.engine is GatewayEngine.NGINX:
        return [
            *out,
            Desired(NGINX_PATH, encode(render(root, "gateway-nginx.conf", **ctx)), on_change=("nginx", Action.RELOAD)),
        ]
    out.append(
        Desired(HAPROXY_PATH, encode(render(root, "gateway-haproxy.cfg", **ctx)), on_change=("haproxy", Action.RELOAD))
    )
    if root.uses_systemd:  # Debian's unit reads Kestrel's config too; the lab starts HAProxy itself
        unit = render(root, "haproxy.service.conf", config_file=root.sys(HAPROXY_PATH))
        out.append(Desired(HAPROXY_DROPIN, encode(unit), on_change=("haproxy", Action.RESTART)))
    return out


def haproxy_argv(root: Sysroot) -> list[str]:
    """HAProxy in master-worker mode in the foreground with only Kestrel's config (the lab supervises it):
    SIGUSR2 makes the master start new workers on the new config while the old ones finish their connections."""
    return [runner.which("haproxy") or "haproxy", "-W", "-db", "-f", root.sys(HAPROXY_PATH)]


def check_plan(root: Sysroot, plan: Plan) -> None:
    """Refuse a new HAProxy config that `haproxy -c` refuses (an admin's template, say), before it replaces the one
    in use. Checked with the plan's 503 page beside it, since the config names the page HAProxy loads."""
    new = {c.path: c.new for c in plan.changes}
    text = new.get(HAPROXY_PATH)
    if text is None:
        return
    with tempfile.TemporaryDirectory(prefix="kestrel-haproxy-") as tmp:
        page, cfg = Path(tmp, "503.html"), Path(tmp, "haproxy.cfg")
        page.write_bytes(new.get(PAGE_503) or root.read(PAGE_503) or b"")
        cfg.write_bytes(text.replace(root.sys(PAGE_503).encode(), str(page).encode()))
        proc = runner.run([runner.which("haproxy") or "haproxy", "-c", "-f", str(cfg)], check=False)
    if proc.returncode is None:  # it did not run (not installed): not the config's fault
        proc.check()
    if not proc.ok:
        # the first alert names the line; the ones after it only sum up
        alerts = [line for line in (proc.stderr + proc.stdout).splitlines() if "[ALERT]" in line]
        why = alerts[0].split(" : ", 1)[-1].removeprefix("config : ") if alerts else "no reason given"
        why = why.replace(str(cfg), "new config")
        raise InputError(f"{root.sys(HAPROXY_PATH)}: haproxy -c refused the new config ({why}); the old one stays")
