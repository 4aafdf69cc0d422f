"""A real frontend's pure parts: network.dhcp modes, services started under systemd, uninstall's plan, kestrel
doctor's verdicts and its DHCP probe packets. The systemd container test (integration) runs them for real."""

from __future__ import annotations

import configparser
import shutil
import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from kestrel import plan
from kestrel.config import load_config
from kestrel.errors import InputError
from kestrel.frontend import dnsmasq, doctor, nginx, services, uninstall, units
from kestrel.frontend.registration import lease_event
from kestrel.net import dhcpprobe
from kestrel.nodes import registry
from kestrel.plan import Action, ServiceAction
from kestrel.sysroot import ServiceMode, Sysroot
from tests.conftest import REPO, Recorder, said
from tests.unit.test_frontend import make_case, run


def with_dhcp(tree: Sysroot, mode: str) -> Path:
    path = make_case(tree, "ipxe-http", "ganesha")
    path.write_text(path.read_text().replace("  interface: eth1", f"  interface: eth1\n  dhcp: {mode}"))
    return path


def test_proxy_mode_answers_only_boots_and_dnsmasq_accepts_it(tree: Sysroot) -> None:
    run(tree, with_dhcp(tree, "proxy"))  # reconfigure runs dnsmasq --test on it first
    conf = tree.path(dnsmasq.CONF_PATH).read_text()
    assert "dhcp-range=10.10.0.0,proxy,255.255.255.0\n" in conf
    assert 'pxe-service=tag:!ipxe,x86PC,"Kestrel",undionly.kpxe\n' in conf
    for absent in ("dhcp-authoritative", "option:router", "10.10.0.100", "175,b0:01:01"):
        assert absent not in conf, absent  # iPXE must wait for the proxy's offer: no no-pxedhcp
    assert "dhcp-boot=tag:ipxe,tag:!img-default,tag:!img-mpi,http://10.10.0.1/boot.ipxe\n" in conf


def test_dhcp_off_renders_no_range_and_a_typo_is_located(tree: Sysroot) -> None:
    run(tree, with_dhcp(tree, "off"))
    conf = tree.path(dnsmasq.CONF_PATH).read_text()
    assert "dhcp-range" not in conf and "enable-tftp" in conf
    bad = tree.path("/etc/kestrel/kestrel.yaml")
    bad.write_text(bad.read_text().replace("dhcp: off", "dhcp: proxi"))
    with pytest.raises(InputError, match=r"kestrel.yaml:\d+:\d*:? ?network.dhcp: .*'authoritative', 'proxy' or 'off'"):
        load_config(bad)


def test_arp_events_register_only_without_leases_of_our_own(tree: Sysroot) -> None:
    tree.path("/etc/kestrel/nodes").write_text("")
    authoritative = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    assert lease_event(tree, authoritative, "arp-add", "52:54:00:aa:00:09", "10.10.0.150") is None
    assert registry.load_registry(tree) == []
    proxy = load_config(with_dhcp(tree, "proxy"))
    tree.path("/etc/kestrel/nodes").write_text("")
    node = lease_event(tree, proxy, "arp-add", "52:54:00:aa:00:09", "10.10.0.150")
    assert node is not None and (node.name, str(node.ip)) == ("node01", "10.10.0.150")
    assert lease_event(tree, proxy, "arp-del", "52:54:00:aa:00:09", "10.10.0.150") is None
    with pytest.raises(InputError, match="is not add, old, del, arp-add or arp-del"):
        lease_event(tree, proxy, "tftp", "52:54:00:aa:00:09", "10.10.0.150")


def test_a_stopped_service_is_enabled_and_started_not_reloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    systemctl = Recorder(active=False)
    monkeypatch.setattr(services, "runner", systemctl)
    with said() as lines:
        services._perform_on_host(ServiceAction("dnsmasq", Action.RELOAD, "x changed"))
        services._perform_on_host(ServiceAction("nfs-ganesha", Action.RELOAD, "y changed"))
        services._perform_on_host(ServiceAction("nginx", Action.RELOAD, "z removed", start=False))
        services._perform_on_host(ServiceAction("ssh", Action.RELOAD, "w changed"))
    assert systemctl.ran == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "dnsmasq"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "nfs-ganesha"],
    ]
    assert lines == [
        "Started dnsmasq (x changed)",
        "Started nfs-ganesha (y changed)",
        "Skipped reload of nginx: not running",
        "Skipped reload of ssh: not running",
    ]


def test_debians_dnsmasq_is_restarted_when_it_dies_and_the_lab_has_no_drop_in(
    tree: Sysroot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dnsmasq 2.90 segfaults on the SIGHUP of a reload once it has answered a host of its dhcp-hostsfile with set:
    tags: on a real frontend systemd starts it again (the lab's supervisor revives its own)."""
    shutil.copytree(REPO / "etc-kestrel", tmp_path / "real/etc/kestrel")
    real = Sysroot(tmp_path / "real", ServiceMode.SYSTEMD)
    systemctl = Recorder()
    monkeypatch.setattr(services, "runner", systemctl)
    run(real, make_case(real, "ipxe-http", "ganesha"))
    dropin = configparser.ConfigParser(strict=True)
    dropin.read_string(real.path(dnsmasq.DROPIN).read_text())
    assert dict(dropin["Service"]) == {"restart": "on-failure", "restartsec": "1s"}
    assert dropin.sections() == ["Service"]  # nothing else of Debian's unit is changed
    assert real.path(dnsmasq.DROPIN).read_text().startswith("# generated by Kestrel; override by dropping ")
    assert systemctl.ran[:2] == [["systemctl", "daemon-reload"], ["systemctl", "restart", "dnsmasq"]]
    run(tree, make_case(tree, "ipxe-http", "ganesha"))  # the lab's tree
    assert tree.path(dnsmasq.CONF_PATH).is_file() and not tree.path(dnsmasq.DROPIN).exists()
    # systemd reads the drop-in again before a restart (what a changed drop-in brings), not on every node's reload
    restart = services.systemd_commands(ServiceAction("dnsmasq", Action.RESTART, "drop-in changed"))
    assert restart == [["systemctl", "daemon-reload"], ["systemctl", "restart", "dnsmasq"]]
    reload = services.systemd_commands(ServiceAction("dnsmasq", Action.RELOAD, "hosts changed"))
    assert reload == [["systemctl", "reload", "dnsmasq"]]


def test_units_come_from_templates_through_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "etc-kestrel", tmp_path / "etc" / "kestrel")
    tree = Sysroot(tmp_path, ServiceMode.SYSTEMD)
    admin = tree.path("/etc/kestrel/templates")
    admin.mkdir()
    (admin / "unit-kestrel-test.timer").write_text("# {{ header }}\n[Timer]\nOnUnitActiveSec=60\n")
    (admin / "unit-kestrel-off.service").write_text("{% if 'nomodule' in config.modules %}[Service]{% endif %}")
    (admin / "unit-kestrel-test.service").write_text("[Service]\nExecStart={{ kestrel('nodes', 'check') }}\n")
    systemctl = Recorder(active=False)
    monkeypatch.setattr(services, "runner", systemctl)
    run(tree, make_case(tree, "ipxe-http", "ganesha"))
    made = sorted(p.name for p in tree.path(units.UNIT_DIR).glob("kestrel-*"))
    assert made == [
        "kestrel-monitor.service",
        "kestrel-registrar.service",
        "kestrel-test.service",
        "kestrel-test.timer",
    ]
    assert "-I -m kestrel.cli.nodes check" in tree.path(f"{units.UNIT_DIR}/kestrel-test.service").read_text()
    assert ["systemctl", "enable", "--now", "kestrel-test.timer"] in systemctl.ran
    assert ["systemctl", "enable", "--now", "kestrel-registrar.service"] in systemctl.ran

    # uninstall: units stopped and removed, drop-ins removed, the hosts block cut, the admin's data kept
    systemctl.active = True
    monkeypatch.setattr(plan, "runner", systemctl)  # RunCommand steps (systemctl disable) run through the plan
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    systemctl.ran.clear()
    uninstall.uninstall(tree, config)
    assert ["systemctl", "disable", "--now", "kestrel-test.timer"] in systemctl.ran
    assert ["systemctl", "restart", "dnsmasq"] in systemctl.ran and ["systemctl", "reload", "nginx"] in systemctl.ran
    assert not list(tree.path(units.UNIT_DIR).glob("kestrel-*"))
    for gone in (dnsmasq.CONF_PATH, dnsmasq.DROPIN, nginx.SITE_PATH, "/usr/local/lib/kestrel/lease-hook"):
        assert not tree.path(gone).exists(), gone
    assert tree.path("/etc/hosts").read_text() == "127.0.0.1\tlocalhost\n# the admin's own line\n192.0.2.7\tprinter\n"
    assert tree.path("/etc/kestrel/nodes").read_text() and tree.path("/etc/kestrel/kestrel.yaml").is_file()
    assert uninstall.plan_uninstall(tree, config).is_empty


def test_doctor_ports_by_mode_and_its_lines(tree: Sysroot) -> None:
    config = load_config(with_dhcp(tree, "proxy"))
    ports = doctor.expected_ports(config)
    assert [(p.number, p.protocol) for p in ports] == [
        (4011, "udp"),
        (69, "udp"),
        (80, "tcp"),
        (2049, "tcp"),
        (111, "tcp"),
    ]
    sockets = {("udp", "0.0.0.0", 4011), ("udp", "10.10.0.1", 69), ("tcp", "*", 80), ("tcp", "127.0.0.1", 2049)}
    lines = [c.line() for c in doctor.port_checks(ports, sockets, config)]
    assert lines[:3] == [
        "ok   port 4011/udp: dnsmasq listens",
        "ok   port 69/udp: dnsmasq listens",
        "ok   port 80/tcp: nginx listens",
    ]
    assert lines[3] == (
        "FAIL port 2049/tcp: nothing listens on 10.10.0.1:2049 (nfs-ganesha should)"
        " -> kestrel-reconfigure --frontend, then systemctl status nfs-ganesha"
    )
    assert doctor.failed(doctor.port_checks(ports, sockets, config))
    assert doctor.clock_check(lambda: 0.0).verdict is doctor.Verdict.FAIL
    assert doctor.clock_check().verdict is doctor.Verdict.OK


def test_doctor_root_key_boot_files_and_images(tree: Sysroot) -> None:
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    assert doctor.root_key_check(tree, config).verdict is doctor.Verdict.FAIL
    assert (
        doctor.boot_files_check(tree, config)
        .line()
        .startswith("FAIL boot files: missing /srv/kestrel/tftp/undionly.kpxe")
    )
    assert [c.line() for c in doctor.image_checks(tree, config)] == [
        "FAIL images: no image is built -> kestrel-images build default"
    ]
    run(tree, tree.path("/etc/kestrel/kestrel.yaml"))
    assert doctor.boot_files_check(tree, config).verdict is doctor.Verdict.OK


def offer_for(discover: bytes, server: str, address: str, boot_file: bytes) -> bytes:
    """The OFFER a server would send back for DISCOVER (op 2, same xid, options 53, 54, 67)."""
    head = bytearray(discover[:240])
    head[0] = 2
    head[16:20] = IPv4Address(address).packed
    options = bytes([53, 1, 2, 54, 4]) + IPv4Address(server).packed + bytes([67, len(boot_file)]) + boot_file
    return bytes(head) + options + b"\xff"


def test_probe_packets_round_trip() -> None:
    mac = bytes.fromhex("020000aabbcc")
    packet = dhcpprobe.discover_packet(mac, 0x1234, pxe=True)
    assert packet[28:34] == mac and struct.unpack("!H", packet[10:12])[0] == 0x8000  # broadcast flag
    assert b"PXEClient:Arch:00000" in packet and bytes([175]) not in packet[240:260]
    proxy = dhcpprobe.parse_offer(offer_for(packet, "10.10.0.1", "0.0.0.0", b"undionly.kpxe"), 0x1234, "10.10.0.1")
    assert proxy is not None and proxy.is_proxy and proxy.boot_file == "undionly.kpxe"
    site = dhcpprobe.parse_offer(offer_for(packet, "10.10.0.254", "10.10.0.50", b""), 0x1234, "10.10.0.254")
    assert site is not None and not site.is_proxy and site.server == IPv4Address("10.10.0.254")
    assert dhcpprobe.parse_offer(offer_for(packet, "10.10.0.1", "0.0.0.0", b"x"), 0x9999, "10.10.0.1") is None
    assert dhcpprobe.parse_offer(packet, 0x1234, "10.10.0.1") is None  # a DISCOVER is not an offer


def test_doctor_reads_the_interface_from_ip(tree: Sysroot) -> None:
    path = tree.path("/etc/kestrel/kestrel.yaml")
    text = path.read_text().replace("interface: eth1", "interface: lo").replace("10.10.0.", "127.0.0.")
    path.write_text(text.replace("address: 127.0.0.1/24", "address: 127.0.0.1/8"))
    assert doctor.interface_check(tree, load_config(path)).line() == "ok   interface lo: is up and has 127.0.0.1/8"
    path.write_text(text.replace("interface: lo", "interface: kt-none0"))
    check = doctor.interface_check(tree, load_config(path))
    assert check.line().startswith("FAIL interface kt-none0: no such interface -> set network.interface in ")
    assert "lo" not in check.remedy.split("here: ")[-1].split(", ")  # the NICs it offers are real ones
