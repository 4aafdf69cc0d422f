"""The gateway's pure parts: its config, the backends chosen from the registry, the rendered files of each engine,
the status parsers, the systemd commands, and kestrel-lab up --modules."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kestrel.cli.lab import parse_modules
from kestrel.config import Config, load_config
from kestrel.errors import InputError
from kestrel.frontend import services
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.gateway import files, status
from kestrel.gateway.backends import Backend, select_backends
from kestrel.lab import tree as lab_tree
from kestrel.nodes.registry import Node
from kestrel.nodes.state import NodeState, State
from kestrel.plan import Action, ServiceAction
from kestrel.sysroot import ServiceMode, Sysroot
from tests.conftest import write_config

BASE = "modules: [core, web, gateway]\n"
NODES = [
    Node("node01", "52:54:00:00:00:01", IPv4Address("10.10.0.11"), "default", "web"),
    Node("node10", "52:54:00:00:00:10", IPv4Address("10.10.0.20"), "default", "web"),
    Node("node02", "52:54:00:00:00:02", IPv4Address("10.10.0.12"), "default", "web"),
    Node("node03", "52:54:00:00:00:03", IPv4Address("10.10.0.13"), "default", "compute"),
]


def config_of(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "kestrel.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ("{engine: apache}", "F:2: gateway.engine: input should be 'haproxy' or 'nginx' (got 'apache')"),
        ("{balance: random}", "F:2: gateway.balance: input should be 'roundrobin' or 'leastconn' (got 'random')"),
        ("{port: 0}", "F:2: gateway.port: input should be greater than or equal to 1 (got 0)"),
        ("{group: '../x'}", "F:2: gateway.group: '../x' is not a valid name (a-z, 0-9, '_', '.', '-', at most 63)"),
        ("{listen: [10.0.0.1, 10.0.0.1]}", "F:2: gateway.listen: an address is given twice"),
        ("{listen: ['10.0.0.1;x']}", "F:2: gateway.listen[0]: input is not a valid IPv4 address (got '10.0.0.1;x')"),
        ("{backends: 3}", "F:2: gateway.backends: unknown key"),
    ],
)
def test_bad_gateway_config_gives_one_located_line(tmp_path: Path, gateway: str, message: str) -> None:
    with pytest.raises(InputError) as e:
        config_of(tmp_path, f"{BASE}gateway: {gateway}\n")
    assert e.value.exit_code == 2
    assert str(e.value).replace(str(tmp_path / "kestrel.yaml"), "F") == message


def test_backends_are_the_groups_nodes_not_down_in_name_order(tmp_path: Path) -> None:
    config = config_of(tmp_path, f"{BASE}gateway: {{group: web, backend_port: 8000}}\n")
    states = {"52:54:00:00:00:02": NodeState(State.DOWN), "52:54:00:00:00:10": NodeState(State.UP)}
    assert select_backends(config, NODES, states) == [
        Backend("node01", IPv4Address("10.10.0.11"), 8000),
        Backend("node10", IPv4Address("10.10.0.20"), 8000),
    ]
    # No group configured: nodes.default_group.
    assert [b.name for b in select_backends(config_of(tmp_path, BASE), NODES, {})] == ["node03"]


def test_haproxy_files(tmp_path: Path) -> None:
    root = Sysroot(tmp_path / "t", ServiceMode.SYSTEMD)
    config = config_of(tmp_path, f"{BASE}gateway: {{group: web, balance: leastconn, listen: [10.10.0.1, 127.0.0.1]}}\n")
    wanted = {d.path: d for d in files.desired_files(root, config, NODES, {})}
    assert set(wanted) == {files.PAGE_503, files.HAPROXY_PATH, files.HAPROXY_DROPIN}
    cfg = wanted[files.HAPROXY_PATH].content.decode()
    assert wanted[files.HAPROXY_PATH].on_change == ("haproxy", Action.RELOAD)
    assert wanted[files.HAPROXY_DROPIN].on_change == ("haproxy", Action.RESTART)
    for line in (
        "    bind 10.10.0.1:8080",
        "    bind 127.0.0.1:8080",
        "    balance leastconn",
        "    server node01 10.10.0.11:80",
        "    server node02 10.10.0.12:80",
        "    server node10 10.10.0.20:80",
        f"    stats socket {root.sys(files.STATS_SOCKET)} mode 600 level admin expose-fd listeners",
        "    retry-on conn-failure empty-response response-timeout",
        "    default-server check inter 1000 fastinter 500 fall 2 rise 2",
    ):
        assert line in cfg.splitlines()
    assert "node03" not in cfg
    assert f"-f {root.sys(files.HAPROXY_PATH)}" in wanted[files.HAPROXY_DROPIN].content.decode()
    assert "No web server of group <b>web</b>" in wanted[files.PAGE_503].content.decode()
    # The lab's HAProxy is Kestrel's own process: no drop-in for a unit.
    lab = {d.path for d in files.desired_files(Sysroot(tmp_path / "lab"), config, NODES, {})}
    assert lab == {files.PAGE_503, files.HAPROXY_PATH}


def test_nginx_files_and_the_empty_group(tmp_path: Path) -> None:
    root = Sysroot(tmp_path / "t")
    config = config_of(tmp_path, f"{BASE}gateway: {{group: web, engine: nginx, balance: leastconn, port: 81}}\n")
    text = {d.path: d for d in files.desired_files(root, config, NODES, {})}[files.NGINX_PATH].content.decode()
    assert "    least_conn;" in text and "    listen 10.10.0.1:81;" in text
    assert "    server 10.10.0.12:80 max_fails=1 fail_timeout=3s;  # node02" in text
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in text and "return 503" not in text
    empty = {d.path: d for d in files.desired_files(root, config, [], {})}[files.NGINX_PATH].content.decode()
    assert "upstream kestrel_gateway" not in empty and "        return 503;" in empty
    assert files.nginx_include(root, config) == root.sys(files.NGINX_PATH)


def test_module_off_renders_nothing_and_removes_what_it_had(tmp_path: Path) -> None:
    root = Sysroot(tmp_path / "t")
    path = write_config(root, BASE)
    reconfigure_frontend(root, load_config(path), path)
    assert root.path(files.HAPROXY_PATH).exists() and root.path(files.PAGE_503).exists()
    path.write_text("modules: [core]\n")
    reconfigure_frontend(root, load_config(path), path)
    assert not root.path(files.HAPROXY_PATH).exists() and not root.path(files.HAPROXY_DROPIN).exists()
    assert not root.path(files.PAGE_503).exists()
    assert files.desired_files(root, load_config(path), NODES, {}) == []


def test_a_haproxy_config_haproxy_refuses_is_never_installed(tmp_path: Path) -> None:
    root = Sysroot(tmp_path / "t")
    path = write_config(root, BASE)
    reconfigure_frontend(root, load_config(path), path)
    before = root.path(files.HAPROXY_PATH).read_text()
    admin = root.path("/etc/kestrel/templates/gateway-haproxy.cfg")
    admin.parent.mkdir(parents=True, exist_ok=True)
    admin.write_text("frontend broken\n    bind 10.10.0.1:8080\n    no-such-keyword here\n")
    with pytest.raises(InputError) as e:
        reconfigure_frontend(root, load_config(path), path)
    assert str(e.value) == (
        f"{root.sys(files.HAPROXY_PATH)}: haproxy -c refused the new config (parsing [new config:3] : unknown "
        "keyword 'no-such-keyword' in 'frontend' section); the old one stays"
    )
    assert root.path(files.HAPROXY_PATH).read_text() == before


STATS = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,\
act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,\
check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,\
req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,addr
kestrel-gateway,FRONTEND,,,0,1,262110,40,1,2,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,3,,,,0,40,0,0,0,0,,0,3,40,,,
kestrel-web,node01,0,0,0,1,,21,1,2,,0,,0,0,0,0,UP,1,1,0,0,0,5,0,,1,3,1,,21,,2,0,,2,L7OK,200,1,0,21,0,0,0,0,,,,21,0,0,10.10.0.11:80
kestrel-web,node02,0,0,0,1,,19,1,2,,0,,2,0,1,1,DOWN,1,1,0,1,1,1,1,,1,3,2,,19,,2,0,,2,L4CON,,0,0,19,0,0,0,0,,,,19,0,0,10.10.0.12:80
kestrel-web,BACKEND,0,0,0,1,26211,40,1,2,0,0,,2,0,1,1,UP,1,1,0,,0,5,0,,1,3,0,,40,,1,0,,3,,,,0,40,0,0,0,0,,,,40,0,0,
"""


def test_haproxy_stats_become_one_row_per_backend() -> None:
    backends = [
        Backend("node01", IPv4Address("10.10.0.11"), 80),
        Backend("node02", IPv4Address("10.10.0.12"), 80),
        Backend("node04", IPv4Address("10.10.0.14"), 80),
    ]
    rows = [r.row() for r in status._from_haproxy(backends, STATS)]
    assert rows == [
        {"name": "node01", "address": "10.10.0.11:80", "health": "UP", "requests": 21, "errors": 0,
         "detail": "check L7OK 200"},
        {"name": "node02", "address": "10.10.0.12:80", "health": "DOWN", "requests": 19, "errors": 2,
         "detail": "check L4CON"},
        {"name": "node04", "address": "10.10.0.14:80", "health": "not loaded", "requests": 0, "errors": 0,
         "detail": "haproxy has not reloaded yet"},
    ]  # fmt: skip


def test_nginx_log_counts_answers_and_failed_tries() -> None:
    log = (
        '2026-12-02T15:00:00+00:00 200 "10.10.0.11:80" "200" 0.001\n'
        '2026-12-02T15:00:01+00:00 200 "10.10.0.12:80, 10.10.0.11:80" "502, 200" 0.002\n'
        '2026-12-02T15:00:02+00:00 503 "-" "-" 0.000\n'
        "a line nginx did not write\n"
    )
    backends = [Backend(n, IPv4Address(f"10.10.0.{i}"), 80) for n, i in (("node01", 11), ("node02", 12), ("x", 13))]
    assert [(r.node, r.health, r.requests, r.errors) for r in status._from_nginx_log(backends, log)] == [
        ("node01", "ok", 2, 0),
        ("node02", "failing", 0, 1),
        ("x", "unused", 0, 0),
    ]


def test_haproxy_reload_on_a_real_frontend_reads_the_drop_in_first() -> None:
    assert services.systemd_commands(ServiceAction("haproxy", Action.RELOAD, "t")) == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "reload", "haproxy"],
    ]


def test_lab_modules_are_added_once_and_kept() -> None:
    shipped = (lab_tree.SHIPPED_ETC / "kestrel.yaml").read_text()
    fresh = lab_tree.lab_config_text(shipped, "klab-", fresh=True, modules=["web", "gateway"])
    again = lab_tree.lab_config_text(fresh, "klab-", fresh=False, modules=["gateway"])
    assert "modules: [core, nfsroot, sshd, openmpi, mpich, web, gateway]" in again
    assert lab_tree.lab_config_text(again, "klab-", fresh=False) == again
    assert parse_modules(" web,gateway,web ") == ["web", "gateway"] and parse_modules(None) == []
    with pytest.raises(InputError, match=r"'\.\./x' is not a valid module name \(--modules\)"):
        parse_modules("web,../x")
