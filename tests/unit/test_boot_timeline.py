"""The boot timeline's parsing: console marks stamped as they appear, systemd-analyze, the phases."""

from __future__ import annotations

import pytest

from kestrel.nodes.boottimeline import PHASES, ConsoleMarks, NodeTimes, parse_node, timeline

CONSOLE = [
    (1.0, "iPXE initialising devices...ok\r\n"),
    (4.0, "Filename: http://10.10.0.1/boot.ipxe\r\nhttp://10.10.0.1/boot.ipxe... ok\r\n"),
    (6.5, "http://10.10.0.1/images/default/1/vmlinuz... ok\r\nhttp://10.10.0.1/images/default/1/initr"),
    (7.0, "d.img... ok\r\n"),  # a mark split across two reads still counts, when it is whole
    (30.0, "IP-Config: eth0 hardware address 52:54:00:05:5b:c6 mtu 1500 DHCP\r\n"),
    (32.0, "IP-Config: no response after 2 secs - giving up\r\n"),
    (33.0, "IP-Config: eth0 hardware address 52:54:00:05:5b:c6 mtu 1500 DHCP\r\nIP-Config: eth0 complete (dhcp"),
    (50.0, "\r\nnode01 login: "),
]
# read 49.5 s after power-on, 40 s after the kernel started: root switched at 33 s, sshd active at 39 s
NODE = "40.00 38.10\nUserspaceTimestampMonotonic=33000000\nActiveEnterTimestampMonotonic=39000000\n"


def marks() -> ConsoleMarks:
    m = ConsoleMarks()
    for elapsed, chunk in CONSOLE:
        m.feed(chunk, elapsed)
    return m


def test_console_marks_are_stamped_when_they_first_appear() -> None:
    m = marks()
    assert m.at == {
        "ipxe": 1.0,
        "ipxe-dhcp": 4.0,
        "initrd": 7.0,
        "initramfs-dhcp-start": 30.0,
        "initramfs-dhcp": 33.0,
        "login": 50.0,
    }
    assert m.lost_tries == 1


def test_a_node_that_has_not_switched_root_has_no_times() -> None:
    assert parse_node("3.1 2.0\nUserspaceTimestampMonotonic=0\nActiveEnterTimestampMonotonic=0\n") is None
    assert parse_node("bash: systemctl: command not found") is None
    times = parse_node(NODE)
    assert times == NodeTimes(40.0, 33.0, 39.0)


def test_phases_add_up_to_power_on_to_ssh() -> None:
    phases = timeline(marks(), parse_node(NODE), ssh_ready=49.0, read_at=49.5)
    assert list(phases) == list(PHASES)
    assert phases == pytest.approx(
        {
            "firmware + iPXE DHCP": 4.0,
            "boot script, kernel, initrd (HTTP)": 3.0,
            "kernel to initramfs DHCP": 26.0,
            "initramfs: NFS root, overlay": 9.5 + 33.0 - 33.0,
            "systemd to sshd": 6.0,
            "sshd to SSH session": 49.0 - 48.5,
        }
    )
    assert sum(v for v in phases.values() if v is not None) == pytest.approx(49.0)


def test_a_missing_mark_leaves_its_phase_and_the_next_unknown() -> None:
    m = marks()
    del m.at["initramfs-dhcp"]
    phases = timeline(m, None, ssh_ready=49.0)
    assert phases["kernel to initramfs DHCP"] is None and phases["initramfs: NFS root, overlay"] is None
    assert phases["firmware + iPXE DHCP"] == 4.0
