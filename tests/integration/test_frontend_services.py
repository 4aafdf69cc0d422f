"""The rendered frontend, run for real in network namespaces: dnsmasq DHCP + TFTP, nginx, nfs-ganesha."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kestrel import runner, supervisor
from kestrel.config import load_config
from kestrel.frontend import dnsmasq, nfs, nginx
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.images import store
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.conftest import said
from tests.unit.test_frontend import publish_fake_image

FE_IP = "10.10.0.1"
REGISTERED_MAC = "52:54:00:4b:00:07"


@dataclass
class Cluster:
    root: Sysroot
    config_path: Path
    topo: Topology
    fe: str
    bridge: str

    def reconfigure(self) -> list[str]:
        with said() as lines:
            reconfigure_frontend(self.root, load_config(self.config_path), self.config_path)
        return lines

    def add_client(self, suffix: str, mac: str | None = None, address: str | None = None) -> tuple[str, str]:
        ns = self.topo.add_netns(suffix)
        _, dev = self.topo.add_veth(self.fe, f"{suffix}p", ns, f"{suffix}e", master_a=self.bridge, address_b=address)
        if mac:
            runner.run(["ip", "-n", ns, "link", "set", dev, "address", mac])
        return ns, dev


@pytest.fixture
def cluster(tree: Sysroot, topology: Topology) -> Iterator[Cluster]:
    fe = topology.add_netns("fe")
    bridge = topology.add_bridge(fe, "br", f"{FE_IP}/24")
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    text = config_path.read_text().replace("interface: eth1", f"interface: {bridge}")
    config_path.write_text(text.replace("server: kernel", "server: ganesha"))
    publish_fake_image(tree, "default", "1")
    tree.path("/etc/kestrel/nodes").write_text(f"{REGISTERED_MAC},set:img-default,set:grp-compute,10.10.0.57,node07\n")
    c = Cluster(tree, config_path, topology, fe, bridge)
    c.reconfigure()
    try:
        yield c
    finally:
        for name in ("dnsmasq", "nginx", "nfs-ganesha"):
            supervisor.stop(tree, name)


def start(c: Cluster, name: str, argv: list[str], ready: str | None = None, private_run: bool = False) -> None:
    record = supervisor.start(c.root, name, argv, netns=c.fe, private_run=private_run)
    if ready:
        assert supervisor.wait_for_log(record, ready, 20), Path(record.log).read_text()


def dhcp(c: Cluster, ns: str, dev: str, tmp: Path, conf: str = "") -> str:
    """One real DHCP exchange with dhclient, then the leased address set on DEV; returns the lease file.

    dhclient's script is /bin/true so it cannot touch the host's resolv.conf; the address is set here instead.
    """
    lease = tmp / f"{ns}.lease"
    conf_file = tmp / f"{ns}.conf"
    conf_file.write_text(conf)
    runner.run(
        [
            "dhclient",
            "-1",
            "-v",
            "-sf",
            "/bin/true",
            "-cf",
            str(conf_file),
            "-lf",
            str(lease),
            "-pf",
            str(tmp / f"{ns}.pid"),
            dev,
        ],
        via=runner.Netns(ns),
        timeout=40,
    )
    text = lease.read_text()
    address = text.split("fixed-address ")[1].split(";")[0]
    runner.run(["ip", "addr", "add", f"{address}/24", "dev", dev], via=runner.Netns(ns))
    return text


def test_dhcp_tftp_and_fixed_hosts(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster, "dnsmasq", dnsmasq.foreground_argv(cluster.root), ready="started")

    ns, dev = cluster.add_client("c1")
    lease = dhcp(cluster, ns, dev, tmp_path)
    address = lease.split("fixed-address ")[1].split(";")[0]
    assert 100 <= int(address.rsplit(".", 1)[1]) <= 199, lease
    assert f"option routers {FE_IP};" in lease

    ns2, dev2 = cluster.add_client("c2", REGISTERED_MAC)
    lease2 = dhcp(cluster, ns2, dev2, tmp_path)
    assert "fixed-address 10.10.0.57;" in lease2
    assert 'option host-name "node07";' in lease2
    assert 'option domain-name "cluster.local";' in lease2

    fetched = tmp_path / "undionly.kpxe"
    runner.run(
        ["curl", "-sS", "--max-time", "20", "-o", str(fetched), f"tftp://{FE_IP}/undionly.kpxe"], via=runner.Netns(ns)
    )
    assert fetched.read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()


def test_registry_change_reaches_running_dnsmasq_by_sighup(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster, "dnsmasq", dnsmasq.foreground_argv(cluster.root), ready="started")
    pid = supervisor.find(cluster.root, "dnsmasq").pid  # type: ignore[union-attr]
    mac = "52:54:00:4b:00:08"
    with cluster.root.path("/etc/kestrel/nodes").open("a") as f:
        f.write(f"{mac},set:img-default,set:grp-compute,10.10.0.58,node08\n")
    # dnsmasq runs under this root: the dry run says it would reload it, as the real run then does
    _, report = reconfigure_frontend(cluster.root, load_config(cluster.config_path), cluster.config_path, dry_run=True)
    assert report.splitlines()[-1] == "Would reload dnsmasq (/etc/kestrel/hosts changed)", report
    said = cluster.reconfigure()
    assert said == [
        f"Wrote {cluster.root.sys('/etc/kestrel/hosts')}",
        f"Wrote {cluster.root.sys('/etc/hosts')}",
        "Reloaded dnsmasq (/etc/kestrel/hosts changed)",
    ]
    assert supervisor.find(cluster.root, "dnsmasq").pid == pid  # type: ignore[union-attr]
    time.sleep(0.5)
    ns, dev = cluster.add_client("c3", mac)
    lease = dhcp(cluster, ns, dev, tmp_path)
    assert "fixed-address 10.10.0.58;" in lease and 'option host-name "node08";' in lease
    # dnsmasq answers DNS for registered names (nodes resolve each other through it).
    out = runner.run(["getent", "ahostsv4", "node08.cluster.local"], via=runner.Netns(ns), check=False)
    dig = runner.run(["busybox", "nslookup", "node08.cluster.local", FE_IP], via=runner.Netns(ns), check=False)
    assert "10.10.0.58" in dig.stdout + out.stdout, dig.stdout + dig.stderr


def test_config_change_restarts_supervised_dnsmasq(cluster: Cluster) -> None:
    start(cluster, "dnsmasq", dnsmasq.foreground_argv(cluster.root), ready="started")
    pid = supervisor.find(cluster.root, "dnsmasq").pid  # type: ignore[union-attr]
    cluster.config_path.write_text(cluster.config_path.read_text().replace("lease_time: 12h", "lease_time: 2h"))
    said = cluster.reconfigure()
    assert said[-1] == "Restarted dnsmasq (/etc/dnsmasq.d/kestrel.conf changed)"
    record = supervisor.find(cluster.root, "dnsmasq")
    assert record is not None and record.pid != pid
    assert cluster.reconfigure() == []


def test_nginx_serves_boot_ipxe(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster, "nginx", nginx.foreground_argv(cluster.root))
    ns, _ = cluster.add_client("c4", address="10.10.0.240/24")
    got = None
    for _ in range(50):
        proc = runner.run(
            ["curl", "-sS", "--max-time", "5", f"http://{FE_IP}/boot.ipxe"], via=runner.Netns(ns), check=False
        )
        if proc.returncode == 0:
            got = proc.stdout
            break
        time.sleep(0.2)
    assert got == cluster.root.path("/srv/kestrel/http/boot.ipxe").read_text()
    assert got.startswith("#!ipxe\n")
    kernel = runner.run(
        ["curl", "-sS", "--max-time", "5", f"http://{FE_IP}/images/default/1/vmlinuz"], via=runner.Netns(ns)
    )
    assert kernel.stdout == "kernel"
    missing = runner.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{FE_IP}/../../etc/passwd"],
        via=runner.Netns(ns),
        check=False,
    )
    assert missing.stdout == "404"


def test_ganesha_exports_are_listed_by_showmount(cluster: Cluster) -> None:
    start(cluster, "nfs-ganesha", nfs.ganesha_foreground_argv(cluster.root), private_run=True)
    ns, _ = cluster.add_client("c5", address="10.10.0.241/24")
    out = ""
    for _ in range(60):
        proc = runner.run(["showmount", "-e", FE_IP], via=runner.Netns(ns), check=False, timeout=10)
        out = proc.stdout
        if proc.returncode == 0 and "/home" in out:
            break
        time.sleep(0.5)
    exported = {line.split()[0] for line in out.splitlines()[1:]}
    assert exported == {
        cluster.root.sys("/home"),
        cluster.root.sys("/etc/kestrel/hostfiles"),
        cluster.root.sys("/srv/kestrel/images/default.versions/1"),
    }, out


def showmount(c: Cluster, ns: str, want: str) -> set[str]:
    """The exported paths, once WANT is among them (ganesha takes a moment to start or reload)."""
    out = ""
    for _ in range(60):
        proc = runner.run(["showmount", "-e", FE_IP], via=runner.Netns(ns), check=False, timeout=10)
        out = proc.stdout
        if proc.returncode == 0 and want in out:
            break
        time.sleep(0.5)
    return {line.split()[0] for line in out.splitlines()[1:]}


def test_new_image_versions_reach_ganesha_by_reload_not_restart(cluster: Cluster) -> None:
    """Running nodes keep their mounts: a new version is exported by SIGHUP, the one they booted stays."""
    root = cluster.root
    start(cluster, "nfs-ganesha", nfs.ganesha_foreground_argv(root), private_run=True)
    ns, _ = cluster.add_client("c8", address="10.10.0.242/24")

    def version(v: str) -> str:
        path = f"/srv/kestrel/images/default.versions/{v}"
        root.path(path).mkdir(parents=True, exist_ok=True)
        store.publish(
            root,
            {
                "name": "default",
                "version": v,
                "root": path,
                "kernel": f"images/default/{v}/vmlinuz",
                "initrd": f"images/default/{v}/initrd.img",
                "built": f"2026-11-22T00:00:0{v}",
            },
        )
        return root.sys(path)

    first = version("1")
    assert first in showmount(cluster, ns, first)
    pid = supervisor.find(root, "nfs-ganesha")
    second = version("2")
    assert "Reloaded nfs-ganesha (/etc/ganesha/kestrel-exports.conf changed)" in cluster.reconfigure()
    assert {first, second} <= showmount(cluster, ns, second)
    version("3")
    fourth = version("4")  # images.keep is 3: the first goes (no node runs on it), ganesha drops its export
    cluster.reconfigure()
    for _ in range(20):
        exported = showmount(cluster, ns, fourth)
        if first not in exported:
            break
        time.sleep(0.5)
    assert {second, fourth} <= exported and first not in exported, exported
    assert supervisor.find(root, "nfs-ganesha") == pid  # never restarted


UEFI = "option arch code 93 = unsigned integer 16;\nsend arch 7;\n"
IPXE = "option ipxe-encap code 175 = string;\nsend ipxe-encap 01:01:01;\n"


@pytest.mark.parametrize(
    ("kind", "conf", "mac", "filename"),
    [
        ("bios-pxe", "", None, "undionly.kpxe"),
        ("uefi-pxe", UEFI, None, "snponly.efi"),
        ("ipxe-new-node", IPXE, None, f"http://{FE_IP}/boot.ipxe"),
        ("ipxe-registered", IPXE, REGISTERED_MAC, f"http://{FE_IP}/boot/default.ipxe"),
    ],
)
def test_boot_file_per_client_kind(
    cluster: Cluster, tmp_path: Path, kind: str, conf: str, mac: str | None, filename: str
) -> None:
    """BIOS and UEFI PXE ROMs get iPXE; iPXE gets the menu, or its registered image's script."""
    start(cluster, "dnsmasq", dnsmasq.foreground_argv(cluster.root), ready="started")
    ns, dev = cluster.add_client("c6", mac)
    lease = dhcp(cluster, ns, dev, tmp_path, conf)
    assert f'filename "{filename}";' in lease, lease
    if conf == IPXE:  # iPXE is told not to wait for ProxyDHCP offers
        assert "option ipxe-encap b0:1:1;" in lease, lease
