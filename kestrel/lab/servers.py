"""The lab's servers (kestrel-lab up --servers N): a switch host and N servers, each a network namespace with its
own sshd, joined by a veth underlay, so kestrel-switch and kestrel-vm --server run their real SSH and VXLAN code.

The underlay is a bridge in namespace PREFIXul; every host (the switch host sw, the servers s1..sN and the
frontend's namespace, listed as server fe with no nodes) has a veth PREFIXeth on it with an address in UNDERLAY
(private, and only inside these namespaces). Each sshd runs in its host's namespace with a private /run (a
server's qemu pid files and consoles live there, as on a real server), listening on the underlay address only,
with a host key kept in the lab's tree (so trust survives a down and up) and the frontend's key authorized.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from kestrel import runner, supervisor
from kestrel.config import Config
from kestrel.errors import CommandError
from kestrel.net.netns import Topology
from kestrel.nodes import switchhosts
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)

UNDERLAY = "172.31.241"
SWITCH = "sw"
FRONTEND = "fe"
SERVERS_DIR = "/var/lib/kestrel-lab/servers"  # in the lab's tree: each host's sshd_config and host key
_SSHD = 'mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$1"'


def host_octets(count: int) -> dict[str, int]:
    """Every host of a lab with COUNT servers and its underlay address's last octet."""
    if not 1 <= count <= 200:
        raise CommandError(f"--servers {count}: from 1 to 200")
    return {SWITCH: 1, FRONTEND: 2, **{name: 10 + i for i, name in enumerate(server_names(count), 1)}}


def server_names(count: int) -> list[str]:
    return [f"s{i}" for i in range(1, count + 1)]


def servers_config(hosts: dict[str, int], eth: str, nodes: dict[str, int], bridge: str) -> dict[str, Any]:
    """The config's servers: and switch: for HOSTS on the underlay (NODES: nodes per server)."""
    return {
        "servers": [
            {"name": n, "address": f"{UNDERLAY}.{o}", "underlay_interface": eth, "nodes": nodes.get(n, 0)}
            for n, o in hosts.items()
        ],
        "switch": {"server": SWITCH, "bridge": bridge},
    }


def build_underlay(topo: Topology, hosts: dict[str, int], existing: dict[str, str] | None = None) -> dict[str, str]:
    """The underlay bridge and a namespace per host of HOSTS (EXISTING ones, host -> namespace, are reused) with
    its veth on it; returns host -> namespace."""
    existing = existing or {}
    ul = topo.add_netns("ul")
    bridge = topo.add_bridge(ul, "ulbr")
    spaces = {}
    for name, octet in hosts.items():
        ns = existing.get(name) or topo.add_netns(name)
        topo.add_veth(ul, f"u{name}", ns, "eth", master_a=bridge, address_b=f"{UNDERLAY}.{octet}/24")
        spaces[name] = ns
    return spaces


def sshd_record(name: str) -> str:
    return f"sshd-{name}"


def ensure_key(path: Path) -> Path:
    """An ed25519 key pair at PATH (made once)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)])
    return path


def start_sshd(
    root: Sysroot, name: str, ns: str, address: str, authorized: Path, folder: str = SERVERS_DIR, extra: str = ""
) -> Path:
    """Host NAME's sshd in namespace NS on ADDRESS, letting AUTHORIZED (a public key file) in as root (EXTRA: more
    sshd_config lines); returns its host key."""
    work = root.path(f"{folder}/{name}")
    host_key = ensure_key(work / "host_key")
    conf = work / "sshd_config"
    conf.write_text(
        f"ListenAddress {address}\nHostKey {host_key}\nPidFile none\nUsePAM no\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"AuthorizedKeysFile {authorized}\nStrictModes no\nMaxStartups 100:30:200\n{extra}"
    )
    if supervisor.find(root, sshd_record(name)):
        return host_key
    argv = ["sh", "-c", _SSHD, "sh", str(conf)]
    record = supervisor.start(root, sshd_record(name), argv, netns=ns, private_run=True)
    if not supervisor.wait_for_log(record, "Server listening", 20):
        tail = Path(record.log).read_text(errors="replace")[-300:] if Path(record.log).exists() else ""
        supervisor.stop(root, sshd_record(name))
        raise CommandError(f"sshd of lab host {name} did not start: {tail.strip() or shlex.join(argv)}")
    return host_key


def fingerprint(host_key: Path) -> str:
    """The SHA256 fingerprint of HOST_KEY's public half (ssh-keygen -l)."""
    return runner.run(["ssh-keygen", "-l", "-f", f"{host_key}.pub"]).stdout.split()[1]


def trust(root: Sysroot, config: Config, name: str, host_key: Path) -> str:
    """kestrel-switch trust NAME --fingerprint (the key the lab made for it)."""
    expected = fingerprint(host_key)
    return switchhosts.trust(root, config, name, lambda seen: seen == expected)


def stop_sshds(root: Sysroot, names: list[str]) -> list[str]:
    return [name for name in names if supervisor.stop(root, sshd_record(name), timeout=5)]
