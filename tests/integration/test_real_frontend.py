"""A real frontend: the README's `./setup.sh --frontend` installs Kestrel from its wheel into a Debian 12 server
booted with systemd (a container on the cluster bridge of a kt- namespace); systemd then runs Debian's dnsmasq,
nginx, nfs-ganesha and rpcbind from Kestrel's drop-ins; kestrel doctor passes and names what breaks; a real DHCP
client gets a lease; proxy mode answers PXE and iPXE beside a site DHCP server; uninstall leaves nothing.

nfs-ganesha, not the kernel server: this machine's kernel has no nfsd (no CONFIG_NFSD in /proc/config.gz,
`mount -t nfsd` says "unknown filesystem type"), and a container shares its host's kernel."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kestrel.net import dhcpprobe
from kestrel.net.netns import Topology, call_in
from kestrel.sysroot import Sysroot
from tests.conftest import eventually, need_root
from tests.integration import frontend_container as fc
from tests.unit.test_frontend import publish_fake_image

SERVICES = ["dnsmasq", "nginx", "nfs-ganesha", "rpcbind"]
CONFIG = "/etc/kestrel/kestrel.yaml"


class Lab:
    def __init__(self, topo: Topology, box: fc.Container, bridge: str, fe: str) -> None:
        self.topo, self.box, self.bridge, self.fe = topo, box, bridge, fe

    def doctor(self) -> tuple[int, list[str]]:
        proc = self.box.run("kestrel", "doctor", check=False)
        return proc.returncode, proc.stdout.splitlines()

    def set_config(self, old: str, new: str) -> None:
        path = self.box.root / CONFIG.lstrip("/")
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    need_root()
    with fc.frontend(tmp_path_factory.mktemp("frontend")) as (topo, box, bridge, fe):
        yield Lab(topo, box, bridge, fe)


def test_setup_frontend_then_systemd_runs_the_services(lab: Lab) -> None:
    box = lab.box
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/root/wheelhouse"}
    said = box.run("/root/kestrel/setup.sh", "--frontend", env=offline).stdout
    assert "Kestrel 0.1.0 is installed in /opt/kestrel" in said
    assert (
        box.run("readlink", "/usr/local/sbin/kestrel-reconfigure").stdout.strip()
        == "/opt/kestrel/bin/kestrel-reconfigure"
    )
    python = box.run("/opt/kestrel/bin/python", "-c", "import kestrel; print(kestrel.__file__)").stdout
    assert python.startswith("/opt/kestrel/lib/"), python  # the wheel, not the source tree
    assert (box.root / "usr/local/share/bash-completion/completions/kestrel-nodes").read_text().startswith("_kestrel")
    # no nfsd in this kernel: the seeded config says ganesha
    assert "server: ganesha" in (box.root / CONFIG.lstrip("/")).read_text()

    lab.set_config("interface: eth1 ", f"interface: {lab.bridge} ")
    # one of Kestrel's own units, as an admin adds one (the shipped ones come the same way, from templates)
    templates = box.root / "etc/kestrel/templates"
    templates.mkdir(exist_ok=True)
    (templates / "unit-kestrel-check.service").write_text(
        "[Service]\nType=oneshot\nExecStart={{ kestrel('nodes', '--root', tree, 'check') }}\n"
    )
    (templates / "unit-kestrel-check.timer").write_text(
        "[Timer]\nOnUnitActiveSec=60\n[Install]\nWantedBy=timers.target\n"
    )
    first = box.run("kestrel-reconfigure", "--all")
    assert "Started kestrel-check.timer" in first.stderr, first.stderr
    assert box.run("systemctl", "is-active", "kestrel-check.timer").stdout.strip() == "active"
    assert box.run("systemctl", "is-enabled", "kestrel-check.timer").stdout.strip() == "enabled"
    for service in ("dnsmasq", "nginx", "nfs-ganesha"):
        assert f"Restarted {service}" in first.stderr or f"Reloaded {service}" in first.stderr, first.stderr
    assert box.run("systemctl", "is-active", *SERVICES).stdout.split() == ["active"] * 4
    again = box.run("kestrel-reconfigure", "--all")
    assert "Nothing to do" in again.stderr and "Reloaded" not in again.stderr and "Restarted" not in again.stderr
    # an image's manifest, kernel and initrd as kestrel-images publishes them (its root is empty: nothing boots
    # it here), for nginx to serve and ganesha to export
    publish_fake_image(Sysroot(box.root), "default", "1")
    assert "Reloaded nfs-ganesha" in box.run("kestrel-reconfigure", "--frontend").stderr

    # upgrade: the admin's config stays, the shipped one lands beside it
    box.run("/root/kestrel/setup.sh", "--frontend", env=offline)
    assert lab.bridge in (box.root / CONFIG.lstrip("/")).read_text()
    assert (box.root / "etc/kestrel/kestrel.yaml.dpkg-dist").is_file()


def test_doctor_passes_and_names_what_breaks(lab: Lab) -> None:
    code, lines = lab.doctor()
    assert code == 0, "\n".join(lines)
    assert f"ok   interface {lab.bridge}: is up and has 10.10.0.1/24" in lines
    data = json.loads(lab.box.run("kestrel", "doctor", "--json").stdout)
    assert {c["verdict"] for c in data} == {"ok"}

    subprocess.run(["ip", "-n", lab.fe, "link", "set", lab.bridge, "down"], check=True)
    try:
        code, lines = lab.doctor()
        assert (
            code == 1
            and f"FAIL interface {lab.bridge}: is down -> ip link set {lab.bridge} up (and check the cable)" in lines
        )
    finally:
        subprocess.run(["ip", "-n", lab.fe, "link", "set", lab.bridge, "up"], check=True)

    lab.box.run("systemctl", "stop", "nginx")
    try:
        code, lines = lab.doctor()
        assert code == 1
        assert (
            "FAIL service nginx: not running -> systemctl start nginx; journalctl -u nginx says why it stopped" in lines
        )
        assert any(line.startswith("FAIL port 80/tcp: nothing listens") for line in lines)
    finally:
        lab.box.run("systemctl", "start", "nginx")

    site = start_site_dhcp(lab, "rv", "10.10.0.250/24")
    try:
        code, lines = lab.doctor()
        assert code == 1
        assert (
            "FAIL other DHCP servers: 10.10.0.250 also answers DHCP on "
            f"{lab.bridge} -> stop the other server, or set network.dhcp: proxy (answer only PXE boots beside it)"
        ) in lines
    finally:
        site.terminate()
        site.wait(10)
    assert lab.doctor()[0] == 0


def start_site_dhcp(lab: Lab, suffix: str, address: str) -> subprocess.Popen[bytes]:
    """A plain dnsmasq in a namespace of its own on the cluster bridge: the site's DHCP server."""
    ns = lab.topo.add_netns(suffix)
    _, inside = lab.topo.add_veth(lab.fe, f"{suffix}p", ns, f"{suffix}i", master_a=lab.bridge, address_b=address)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
         f"--interface={inside}", "--bind-interfaces", "--dhcp-range=10.10.0.50,10.10.0.60,255.255.255.0,5m",
         "--dhcp-leasefile=/dev/null", "--user=root", "--log-facility=-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert eventually(
        lambda: b":67 " in subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hlnu"], capture_output=True).stdout, 10
    )
    return proc


def test_a_dhcp_client_gets_a_lease_and_registers(lab: Lab, tmp_path: Path) -> None:
    ns = lab.topo.add_netns("cl")
    _, inside = lab.topo.add_veth(lab.fe, "clp", ns, "cli", master_a=lab.bridge)
    mac = subprocess.run(["ip", "-n", ns, "-j", "link", "show", inside], capture_output=True, text=True, check=True)
    mac_address = json.loads(mac.stdout)[0]["address"]
    script = tmp_path / "dhclient-script"  # the stock one would rewrite the host's /etc/resolv.conf
    script.write_text(
        '#!/bin/sh\ncase "$reason" in BOUND|RENEW|REBOOT) ip addr add "$new_ip_address/24" dev "$interface";; esac\n'
    )
    script.chmod(0o755)
    pid = tmp_path / "dhclient.pid"
    subprocess.run(
        ["ip", "netns", "exec", ns, "dhclient", "-1", "-v", "-sf", str(script), "-pf", str(pid),
         "-lf", str(tmp_path / "leases"), inside],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        addresses = subprocess.run(["ip", "-n", ns, "-4", "-j", "addr", "show", inside], capture_output=True, text=True)
        (ip,) = [a["local"] for a in json.loads(addresses.stdout)[0]["addr_info"]]
        assert IPv4Address("10.10.0.100") <= IPv4Address(ip) <= IPv4Address("10.10.0.199")
        # Debian's dnsmasq (user dnsmasq) ran Kestrel's lease hook as root: the client is a registered node
        registry = lab.box.root / "etc/kestrel/nodes"
        assert eventually(lambda: f"{mac_address}," in registry.read_text(), 20), registry.read_text()
    finally:
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], check=False)


def test_proxy_mode_answers_pxe_beside_the_site_server(lab: Lab) -> None:
    lab.set_config("  interface:", "  dhcp: proxy\n  interface:")
    said = lab.box.run("kestrel-reconfigure", "--frontend").stderr
    assert "Restarted dnsmasq" in said
    site = start_site_dhcp(lab, "st", "10.10.0.254/24")
    try:
        ns = lab.topo.add_netns("px")
        _, inside = lab.topo.add_veth(lab.fe, "pxp", ns, "pxi", master_a=lab.bridge)
        pxe = call_in(ns, dhcpprobe.probe, inside, wait=4, pxe=True)
        by_server = {str(o.server): o for o in pxe}
        assert not by_server["10.10.0.254"].is_proxy  # the site's server gives the address
        proxy = by_server["10.10.0.1"]
        assert proxy.is_proxy and proxy.boot_file == "undionly.kpxe", proxy
        ipxe = {str(o.server): o for o in call_in(ns, dhcpprobe.probe, inside, wait=4, ipxe=True)}
        assert ipxe["10.10.0.1"].boot_file == "http://10.10.0.1/boot.ipxe", ipxe
        code, lines = lab.doctor()
        assert "ok   port 4011/udp: dnsmasq listens" in lines
        assert "ok   other DHCP servers: 10.10.0.254 gives addresses (network.dhcp: proxy)" in lines
        assert code == 0, "\n".join(lines)
    finally:
        site.terminate()
        site.wait(10)


def test_uninstall_leaves_no_kestrel_unit_file_or_package(lab: Lab) -> None:
    box = lab.box
    box.run("/root/kestrel/setup.sh", "--uninstall")
    units = box.run("systemctl", "list-unit-files", "--no-legend", "kestrel*", check=False).stdout
    assert units.strip() == ""
    kept = ["/etc/kestrel", "/var/lib/kestrel", "/srv/kestrel", "/var/log/kestrel", "/root/kestrel", "/root/wheelhouse"]
    prune = [a for k in kept for a in ("-path", k, "-prune", "-o")]
    left = box.run("find", "/", "-xdev", *prune, "-iname", "*kestrel*", "-print").stdout.split()
    assert left == [], left
    assert not (box.root / "opt/kestrel").exists()
    assert "kestrel" not in (box.root / "etc/hosts").read_text()
    assert box.run("systemctl", "is-active", "dnsmasq", "nginx").stdout.split() == ["active", "active"]
    assert (box.root / "etc/kestrel/kestrel.yaml").is_file()  # the admin's data stays
