"""The boot timeline's parsing: console marks stamped as they appear, systemd-analyze, the phases."""

from __future__ import annotations

import pytest

from kestrel.nodes.boottimeline import PHASES, ConsoleMarks, parse_systemd, seconds, timeline

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
ANALYZE = "Startup finished in 31.250s (kernel) + 12.5s (userspace) = 43.750s\ngraphical.target reached after 12s"
CHAIN = "multi-user.target @12.4s\n└─ssh.service @9.750s +250ms\n  └─basic.target @9.6s\n"


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


@pytest.mark.parametrize(
    ("text", "value"), [("24.418s", 24.418), ("950ms", 0.95), ("1min 2.5s", 62.5), ("2min", 120.0)]
)
def test_systemd_time_spans(text: str, value: float) -> None:
    assert seconds(text) == pytest.approx(value)


def test_a_boot_that_is_not_finished_has_no_systemd_times() -> None:
    assert (
        parse_systemd("Bootup is not yet finished (org.freedesktop.systemd1.Manager.FinishTimestampMonotonic=0).", "")
        is None
    )
    with pytest.raises(ValueError):
        seconds("soon")


def test_phases_add_up_to_power_on_to_ssh() -> None:
    systemd = parse_systemd(ANALYZE, CHAIN)
    assert systemd is not None and systemd.kernel == 31.25 and systemd.sshd == 9.75
    phases = timeline(marks(), systemd, ssh_ready=49.0)
    assert list(phases) == list(PHASES)
    assert phases == pytest.approx(
        {
            "firmware + iPXE DHCP": 4.0,
            "boot script, kernel, initrd (HTTP)": 3.0,
            "kernel to initramfs DHCP": 26.0,
            "initramfs: NFS root, overlay": 7.0 + 31.25 - 33.0,
            "systemd to sshd": 9.75,
            "sshd to SSH session": 49.0 - 48.0,
        }
    )
    assert sum(v for v in phases.values() if v is not None) == pytest.approx(49.0)


def test_a_missing_mark_leaves_its_phase_and_the_next_unknown() -> None:
    m = marks()
    del m.at["initramfs-dhcp"]
    phases = timeline(m, None, ssh_ready=49.0)
    assert phases["kernel to initramfs DHCP"] is None and phases["initramfs: NFS root, overlay"] is None
    assert phases["firmware + iPXE DHCP"] == 4.0
