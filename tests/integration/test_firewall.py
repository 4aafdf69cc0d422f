"""The firewall module for real: nftables in the frontend's namespace, dnsmasq, nginx, nfs-ganesha and sshd, and
"nodes" in namespaces whose MACs are set here. NFS is reached by libnfs's nfs-ls (this kernel has no NFS client)
and by ONC RPC calls on a kept TCP connection (an NFS client's existing connection)."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kestrel import runner, supervisor
from kestrel.config import load_config
from kestrel.frontend import dnsmasq, firewall, keybundles, nfs, nginx, node_changes, registrar
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.nodes import pending, registry
from kestrel.status import page, report
from kestrel.sysroot import Sysroot
from tests.integration.test_frontend_services import dhcp
from tests.treestate import kestrel
from tests.unit.test_frontend import publish_fake_image

FE_IP = "10.10.0.1"
NODE_MAC = "52:54:00:f1:00:01"
NODE_IP = "10.10.0.21"
STRANGER_MAC = "52:54:00:f1:00:99"


@dataclass
class Frontend:
    root: Sysroot
    config_path: Path
    topo: Topology
    fe: str
    bridge: str

    @property
    def config(self):  # noqa: ANN201 - the config as it is on disk now
        return load_config(self.config_path)

    def machine(self, suffix: str, mac: str, address: str | None = None) -> tuple[str, str]:
        ns = self.topo.add_netns(suffix)
        _, dev = self.topo.add_veth(self.fe, f"{suffix}p", ns, f"{suffix}e", master_a=self.bridge)
        runner.run(["ip", "-n", ns, "link", "set", dev, "address", mac])
        if address:
            runner.run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev])
        return ns, dev

    def ruleset(self) -> str:
        return runner.run(["nft", "list", "ruleset"], via=runner.Netns(self.fe)).stdout


_SSHD = 'mkdir -m 755 -p /run/sshd && exec /usr/sbin/sshd -D -e -f /dev/null -o "HostKey=$1" -o "ListenAddress=$2"'


@pytest.fixture
def frontend(tree: Sysroot, topology: Topology, tmp_path: Path) -> Iterator[Frontend]:
    fe = topology.add_netns("fe")
    bridge = topology.add_bridge(fe, "br", f"{FE_IP}/24")
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    text = config_path.read_text().replace("interface: eth1", f"interface: {bridge}\n  netns: {fe}")
    text = text.replace("server: kernel", "server: ganesha")
    config_path.write_text(text.replace("modules: [core,", "modules: [firewall, core,"))
    publish_fake_image(tree, "default", "1")
    tree.path("/srv/kestrel/images/default.versions/1/etc").mkdir(parents=True)
    tree.path("/srv/kestrel/images/default.versions/1/etc/hostname").write_text("image\n")
    tree.path("/home/alice").mkdir(parents=True)
    f = Frontend(tree, config_path, topology, fe, bridge)
    reconfigure_frontend(tree, f.config, config_path)
    key = tmp_path / "host_key"
    runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    started = [
        ("dnsmasq", dnsmasq.foreground_argv(tree), False),
        ("nginx", nginx.foreground_argv(tree), False),
        ("nfs-ganesha", nfs.ganesha_foreground_argv(tree), True),
        ("sshd", ["sh", "-c", _SSHD, "sh", str(key), FE_IP], True),
    ]
    try:
        for name, argv, private in started:
            supervisor.start(tree, name, argv, netns=fe, private_run=private)
        for port in (80, 2049, 22):
            assert wait_port(fe, FE_IP, port), f"port {port} never opened"
        yield f
    finally:
        for name, _, _ in reversed(started):
            supervisor.stop(tree, name)


def wait_port(ns: str, host: str, port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            netns.call_in(ns, socket.create_connection, (host, port), 1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def nfs_ls(ns: str, path: str, seconds: float = 5) -> runner.Result:
    """libnfs: the portmapper, MOUNT, then NFSv3 READDIR of PATH (a whole mount, as a node's initramfs does)."""
    url = f"nfs://{FE_IP}{path}?version=3"
    return runner.run(["timeout", str(seconds), "nfs-ls", url], via=runner.Netns(ns), check=False, timeout=seconds + 5)


def ssh_banner(ns: str, seconds: float = 3) -> bytes | None:
    """sshd's banner over a new connection (None: no connection: the SYN was dropped)."""

    def talk() -> bytes | None:
        try:
            with socket.create_connection((FE_IP, 22), seconds) as s:
                s.settimeout(seconds)
                return s.recv(64)
        except OSError:
            return None

    return netns.call_in(ns, talk)


class RpcConnection:
    """One TCP connection to NFS (port 2049) made in a namespace; NULL calls on it, as a mounted client keeps one."""

    def __init__(self, ns: str, timeout: float = 3) -> None:
        self.sock = netns.call_in(ns, socket.create_connection, (FE_IP, 2049), timeout)
        self.xid = 1

    def null(self, seconds: float) -> bool:
        """NFSv3 NULL; whether the answer came within SECONDS."""
        self.xid += 1
        body = struct.pack(">IIIIIIIIII", self.xid, 0, 2, 100003, 3, 0, 0, 0, 0, 0)
        self.sock.settimeout(seconds)
        try:
            self.sock.sendall(struct.pack(">I", 0x80000000 | len(body)) + body)
            reply = self.sock.recv(4096)
        except OSError:
            return False
        return len(reply) >= 8 and struct.unpack(">I", reply[4:8])[0] == self.xid

    def close(self) -> None:
        self.sock.close()


def test_the_table_is_loaded_in_the_namespace_and_touches_no_other(frontend: Frontend) -> None:
    runner.run(["nft", "add", "table", "ip", "site"], via=runner.Netns(frontend.fe))
    runner.run(["nft", "add", "chain", "ip", "site", "mine"], via=runner.Netns(frontend.fe))
    reconfigure_frontend(frontend.root, frontend.config, frontend.config_path)
    node_changes.add(frontend.root, frontend.config, NODE_MAC, ip=NODE_IP)
    text = frontend.ruleset()
    assert "table inet kestrel" in text
    assert "table ip site" in text and "chain mine" in text
    assert f"{NODE_MAC} . {NODE_IP}" in text
    # a rule that nothing wrote: kestrel-reconfigure --all puts the table back
    runner.run(["nft", "delete", "table", "inet", "kestrel"], via=runner.Netns(frontend.fe))
    reconfigure_frontend(frontend.root, frontend.config, frontend.config_path)
    assert f"{NODE_MAC} . {NODE_IP}" in frontend.ruleset()
    assert "table ip site" in frontend.ruleset()


def test_an_unregistered_machine_boots_but_gets_no_nfs_and_no_ssh(frontend: Frontend, tmp_path: Path) -> None:
    frontend.root.path("/etc/kestrel/kestrel.yaml").write_text(
        frontend.config_path.read_text().replace("auto_register: true", "auto_register: false")
    )
    ns, dev = frontend.machine("st", STRANGER_MAC)
    lease = dhcp(frontend, ns, dev, tmp_path)  # type: ignore[arg-type]
    assert "fixed-address 10.10.0.1" in lease
    got = runner.run(["curl", "-sS", "--max-time", "10", f"http://{FE_IP}/boot.ipxe"], via=runner.Netns(ns))
    assert got.stdout.startswith("#!ipxe")
    started = time.monotonic()
    assert not nfs_ls(ns, "/home").ok
    assert time.monotonic() - started < 6
    assert ssh_banner(ns) is None
    assert "counter packets 0" not in frontend.ruleset().split("counter refused")[1].split("}")[0]
    live = firewall.read_live(frontend.root, frontend.config)
    assert live is not None and live.refused_total > 0
    assert any(mac == STRANGER_MAC for mac, _ in live.refused)


def test_a_registered_node_mounts_its_image_and_home_and_another_mac_cannot(frontend: Frontend) -> None:
    node_changes.add(frontend.root, frontend.config, NODE_MAC, ip=NODE_IP)
    ns, dev = frontend.machine("nd", NODE_MAC, NODE_IP)
    image = nfs_ls(ns, frontend.root.sys("/srv/kestrel/images/default.versions/1"))
    assert image.ok, image.why()
    assert "etc" in image.stdout
    home = nfs_ls(ns, frontend.root.sys("/home"))
    assert home.ok and "alice" in home.stdout, home.why()
    assert (ssh_banner(ns) or b"").startswith(b"SSH-2.0-")
    # the same address from another MAC
    runner.run(["ip", "-n", ns, "link", "set", dev, "down"])
    other, _ = frontend.machine("ot", STRANGER_MAC, NODE_IP)
    assert not nfs_ls(other, frontend.root.sys("/home"), seconds=3).ok
    assert ssh_banner(other) is None
    live = firewall.read_live(frontend.root, frontend.config)
    assert live is not None and live.accepted[(NODE_MAC, firewall.IPv4Address(NODE_IP))] > 0
    assert (STRANGER_MAC, firewall.IPv4Address(NODE_IP)) in live.refused
    # what an admin sees: the status view and kestrel-nodes check, per node
    [row] = report.status(frontend.root, frontend.config)
    assert row.firewall is not None and row.firewall[0] and row.firewall[1] > 0
    assert f"{row.firewall[0]} in, {row.firewall[1]} refused" in page.shown(row, 0, True)["firewall"]
    key = frontend.root.path("/root/.ssh/id_ed25519")
    key.parent.mkdir(parents=True)
    runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    check = kestrel("nodes", frontend.root.root, "check", "node01", "--json")
    assert check.returncode == 1, check.stderr  # no sshd on the "node"
    [checked] = json.loads(check.stdout)
    assert checked["firewall"]["in_node_set"] and checked["firewall"]["refused_packets"] > 0


def test_grant_and_revoke_take_effect_when_the_command_returns(frontend: Frontend) -> None:
    ns, dev = frontend.machine("nd", NODE_MAC, NODE_IP)
    assert not nfs_ls(ns, frontend.root.sys("/home"), seconds=2).ok
    node_changes.add(frontend.root, frontend.config, NODE_MAC, ip=NODE_IP)
    assert nfs_ls(ns, frontend.root.sys("/home"), seconds=1).ok
    kept = RpcConnection(ns)
    try:
        assert kept.null(1)
        node_changes.set_fields(frontend.root, frontend.config, ["node01"], ip="10.10.0.22")
        assert not kept.null(1)  # its address is no longer the registered one: even a kept connection stops
        runner.run(["ip", "-n", ns, "addr", "del", f"{NODE_IP}/24", "dev", dev])
        runner.run(["ip", "-n", ns, "addr", "add", "10.10.0.22/24", "dev", dev])
    finally:
        kept.close()
    assert nfs_ls(ns, frontend.root.sys("/home"), seconds=1).ok
    kept = RpcConnection(ns)
    try:
        assert kept.null(1)
        node_changes.remove(frontend.root, frontend.config, ["node01"])
        assert not kept.null(1)
    finally:
        kept.close()
    assert not nfs_ls(ns, frontend.root.sys("/home"), seconds=2).ok


def test_counters_of_unchanged_nodes_survive_a_registry_change(frontend: Frontend) -> None:
    node_changes.add(frontend.root, frontend.config, NODE_MAC, ip=NODE_IP)
    ns, _ = frontend.machine("nd", NODE_MAC, NODE_IP)
    assert nfs_ls(ns, frontend.root.sys("/home")).ok
    live = firewall.read_live(frontend.root, frontend.config)
    assert live is not None
    before = live.accepted[(NODE_MAC, firewall.IPv4Address(NODE_IP))]
    node_changes.add(frontend.root, frontend.config, "52:54:00:f1:00:02")
    after = firewall.read_live(frontend.root, frontend.config)
    assert after is not None and len(after.accepted) == 2
    assert after.accepted[(NODE_MAC, firewall.IPv4Address(NODE_IP))] == before > 0


def test_a_pending_machine_boots_but_mounts_only_once_approved(frontend: Frontend, tmp_path: Path) -> None:
    frontend.config_path.write_text(
        frontend.config_path.read_text().replace("auto_register: true", "auto_register: approve")
    )
    ns, dev = frontend.machine("pd", STRANGER_MAC)
    dhcp(frontend, ns, dev, tmp_path)  # type: ignore[arg-type]
    registrar.drain(frontend.root, frontend.config_path)  # the events dnsmasq's hook queued
    assert registry.load_registry(frontend.root) == []
    assert list(pending.load_pending(frontend.root)) == [STRANGER_MAC]
    got = runner.run(["curl", "-sS", "--max-time", "10", f"http://{FE_IP}/boot.ipxe"], via=runner.Netns(ns))
    assert got.stdout.startswith("#!ipxe")
    assert not nfs_ls(ns, frontend.root.sys("/home"), seconds=2).ok
    node_changes.approve(frontend.root, frontend.config, [STRANGER_MAC])
    assert nfs_ls(ns, frontend.root.sys("/home"), seconds=1).ok


def host_keys_script(folder: Path) -> Path:
    """The node's script that fetches its host keys before sshd (written by the image script sshd_host-keys)."""
    phase = Path(__file__).resolve().parents[2] / "phases/node/configure.d/sshd_host-keys"
    text = phase.read_text()
    body = text.split("cat > \"$script\" <<'EOT'\n", 1)[1].split("\nEOT\n", 1)[0]
    script = folder / "host-keys"
    script.write_text(body + "\n")
    return script


def test_a_registered_node_fetches_its_host_keys_and_nobody_else_can(frontend: Frontend, tmp_path: Path) -> None:
    store = frontend.root.path(f"{keybundles.KEYS_DIR}/default")
    store.mkdir(parents=True)
    for kind in ("ed25519", "rsa"):
        runner.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(store / f"ssh_host_{kind}_key")])
    script, url = host_keys_script(tmp_path), keybundles.url(frontend.config)

    def fetch(ns: str, into: Path) -> runner.Result:
        into.mkdir()
        return runner.run(["timeout", "4", "bash", str(script), url, str(into)], via=runner.Netns(ns), check=False)

    ns, dev = frontend.machine("nd", NODE_MAC, NODE_IP)
    assert not fetch(ns, tmp_path / "before").ok  # not registered yet: the port is closed to it
    assert list((tmp_path / "before").iterdir()) == []
    node_changes.add(frontend.root, frontend.config, NODE_MAC, ip=NODE_IP)
    got = fetch(ns, tmp_path / "node")
    assert got.ok, got.why()
    for kind in ("ed25519", "rsa"):
        name = f"ssh_host_{kind}_key"
        assert (tmp_path / "node" / name).read_bytes() == (store / name).read_bytes()
        assert (tmp_path / "node" / name).stat().st_mode & 0o077 == 0
    # the same address from another MAC gets nothing: the firewall drops it
    runner.run(["ip", "-n", ns, "link", "set", dev, "down"])
    other, _ = frontend.machine("ot", STRANGER_MAC, NODE_IP)
    assert not fetch(other, tmp_path / "other").ok
    assert list((tmp_path / "other").iterdir()) == []
    # a removed node: its bundle is gone with it, and so is its pair in the firewall
    node_changes.remove(frontend.root, frontend.config, ["node01"])
    assert not frontend.root.path(f"{keybundles.BUNDLES_DIR}/{NODE_IP}").exists()
