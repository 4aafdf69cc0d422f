"""Boot stages derived from events: nginx access lines, dnsmasq DHCP and TFTP lines, SSH probes; and status rows."""

from __future__ import annotations

import time
from ipaddress import IPv4Address

from kestrel.nodes import bootlog, probes, stages
from kestrel.nodes.leases import Lease
from kestrel.nodes.registry import Node
from kestrel.nodes.stages import Event, Stage
from kestrel.nodes.state import Facts
from kestrel.status import report

MAC = "52:54:00:05:5b:c6"
UA = '"-" "iPXE/1.0.0+git-20190125.36a4c85-5.1"'
# A real boot as the lab's nginx logged it (node01 at 10.10.0.166), then the initramfs's report.
ACCESS = f"""\
10.10.0.166 - - [02/Dec/2026:14:51:50 +0000] "GET /boot.ipxe HTTP/1.1" 200 395 {UA}
10.10.0.166 - - [02/Dec/2026:14:51:51 +0000] "GET /boot/default.ipxe HTTP/1.1" 200 454 {UA}
10.10.0.166 - - [02/Dec/2026:14:51:51 +0000] "GET /images/default/20261202-145142/vmlinuz HTTP/1.1" 200 8247232 {UA}
10.10.0.166 - - [02/Dec/2026:14:51:52 +0000] "GET /images/default/20261202-145142/initrd.img HTTP/1.1" 200 6923008 {UA}
10.10.0.166 - - [02/Dec/2026:14:52:20 +0000] "GET /status/mounted HTTP/1.1" 200 8 "-" "Wget"
10.10.0.9 - - [02/Dec/2026:14:52:21 +0000] "GET /status/ HTTP/1.1" 200 1000 "-" "Mozilla"
10.10.0.166 - - [02/Dec/2026:14:52:22 +0000] "GET /images/default/missing/vmlinuz HTTP/1.1" 404 153 {UA}
garbage line
"""
T0 = 1796223110.0  # 2026-12-02T14:51:50Z


def test_access_log_lines_become_boot_events() -> None:
    events = bootlog.parse_access_log(ACCESS)
    assert [(e.at - T0, e.stage, e.ip, e.version) for e in events] == [
        (0, Stage.SCRIPT, "10.10.0.166", None),
        (1, Stage.SCRIPT, "10.10.0.166", None),
        (1, Stage.KERNEL, "10.10.0.166", "20261202-145142"),
        (2, Stage.INITRD, "10.10.0.166", "20261202-145142"),
        (30, Stage.ROOT, "10.10.0.166", None),
    ]
    assert events[2].image == "default"


def test_dnsmasq_lines_become_lease_and_tftp_events() -> None:
    now = time.mktime(time.strptime("2026 Dec 2 15:00:00", "%Y %b %d %H:%M:%S"))
    text = (
        "Dec  2 14:51:40 dnsmasq-dhcp[11459]: DHCPDISCOVER(kt-1a4br0) 52:54:00:05:5b:c6 \n"
        "Dec  2 14:51:41 dnsmasq-dhcp[11459]: DHCPACK(kt-1a4br0) 10.10.0.166 52:54:00:05:5B:C6 node01\n"
        "Dec  2 14:51:42 dnsmasq-tftp[11459]: sent /var/lib/x/srv/kestrel/tftp/pxelinux.0 to 10.10.0.166\n"
        "Dec  2 14:51:43 dnsmasq-tftp[11459]: sent /srv/kestrel/tftp/images/mpi/7/vmlinuz to 10.10.0.166\n"
        "Dec  2 14:51:44 dnsmasq-tftp[11459]: file /srv/kestrel/tftp/nope not found\n"
        "Dec  2 14:51:45 dnsmasq-dhcp[11459]: RTR-ADVERT(kt-1a4br0) fd10::\n"
        "dnsmasq-dhcp[11459]: DHCPACK(kt-1a4br0) 10.10.0.155 52:54:00:24:73:38 node02\n"  # stderr: no time
    )
    events = bootlog.parse_dnsmasq_log(text, now)
    assert [(e.at - now, e.stage, e.mac, e.ip, e.source) for e in events] == [
        (-499, Stage.LEASE, MAC, "10.10.0.166", "dhcp"),
        (-498, Stage.SCRIPT, None, "10.10.0.166", "tftp"),
        (-497, Stage.KERNEL, None, "10.10.0.166", "tftp"),
    ]
    assert (events[2].image, events[2].version) == ("mpi", "7")
    # a date after now is last year's (dnsmasq writes no year)
    jan = time.mktime(time.strptime("2027 Jan 1 00:00:10", "%Y %b %d %H:%M:%S"))
    [e] = bootlog.parse_dnsmasq_log("Dec 31 23:59:50 dnsmasq-dhcp[1]: DHCPACK(br) 10.0.0.2 52:54:00:00:00:01\n", jan)
    assert jan - e.at == 20


def ev(at: float, stage: Stage, **kw: str) -> Event:
    return Event(at, stage, mac=MAC, **kw)


def test_stages_move_forward_and_a_reboot_starts_over() -> None:
    boot = [ev(10, Stage.LEASE), ev(12, Stage.SCRIPT), ev(13, Stage.KERNEL, image="default", version="1")]
    assert stages.derive([]) == stages.Progress()
    p = stages.derive(boot)
    assert (p.stage, p.since, p.image, p.version, p.last_seen) == (Stage.KERNEL, 13, "default", "1", 13)
    up = [*boot, ev(14, Stage.INITRD), ev(40, Stage.ROOT), ev(90, Stage.SSH)]
    assert (stages.derive(up).stage, stages.derive(up).since) == (Stage.SSH, 90)
    # a lease renewal while up changes nothing; the events' order in the list does not matter
    renewed = stages.derive([ev(500, Stage.LEASE), *reversed(up)])
    assert (renewed.stage, renewed.since, renewed.last_seen) == (Stage.SSH, 90, 500)
    # reboot: the boot script again; the old boot's version no longer holds until the new kernel's fetch
    again = stages.derive([*up, ev(600, Stage.LEASE), ev(602, Stage.SCRIPT)])
    assert (again.stage, again.since, again.version) == (Stage.SCRIPT, 602, None)
    again = stages.derive([*up, ev(602, Stage.KERNEL, image="default", version="2")])
    assert (again.stage, again.version) == (Stage.KERNEL, "2")


def test_down_applies_to_a_node_that_answered_and_a_lease_brings_it_back() -> None:
    up = [ev(1, Stage.SCRIPT), ev(90, Stage.SSH)]
    down = stages.derive([*up, Event(200, Stage.DOWN)])
    assert (down.stage, down.since, down.last_seen) == (Stage.DOWN, 200, 90)
    assert stages.derive([ev(1, Stage.SCRIPT), Event(200, Stage.DOWN)]).stage is Stage.SCRIPT  # booting, stuck
    back = stages.derive([*up, Event(200, Stage.DOWN), ev(300, Stage.LEASE)])
    assert (back.stage, back.since) == (Stage.LEASE, 300)


def test_events_by_address_go_to_the_mac_of_that_address() -> None:
    known = Event(1, Stage.SCRIPT, ip="10.0.0.5")
    stranger = Event(2, Stage.SCRIPT, ip="10.0.0.99")
    assert stages.by_node([known, stranger, ev(3, Stage.LEASE)], {"10.0.0.5": MAC}) == {
        MAC: [known, ev(3, Stage.LEASE)]
    }


OUTPUT = (
    "boot_id=abc\nuptime=120.5\nload=0.50 0.25 0.10\ncpus=2\nmemory_kb=1024000\n"
    "root=/srv/kestrel/images/default.versions/1\n"
)


def test_probe_answers_failures_and_the_events_they_stand_for() -> None:
    answer = probes.parse_answer(OUTPUT)
    assert answer == probes.Answer(
        "abc", 120.5, (0.5, 0.25, 0.1), Facts(2, 1000, "/srv/kestrel/images/default.versions/1")
    )
    found = probes.answered({}, MAC, 1000.0, answer)
    found = probes.answered(found, MAC, 1015.0, answer)  # same boot: ready since its first answer
    p = found[MAC]
    assert (p.ready_at, p.ok_at, p.booted_at, p.load) == (1000.0, 1015.0, 894.5, (0.5, 0.25, 0.1))
    failing = probes.failed(probes.failed(found, MAC, 1030.0), MAC, 1045.0)
    assert failing[MAC].failed_at == 1030.0 and probes.is_failing(failing[MAC])
    down = probes.marked_down(failing, MAC, 1046.0)
    assert [(e.at, e.stage, e.version) for e in probes.events(down[MAC], ("default", "1"))] == [
        (1000.0, Stage.SSH, "1"),
        (1046.0, Stage.DOWN, None),
    ]
    # it answers again in the same boot (a stall): up, and one later failed probe does not make it down at once
    back = probes.answered(down, MAC, 1100.0, answer)
    assert (back[MAC].ready_at, back[MAC].down_at) == (1000.0, None)
    again = probes.failed(back, MAC, 1115.0)
    assert [e.stage for e in probes.events(again[MAC], ("default", "1"))] == [Stage.SSH]
    rebooted = probes.answered(down, MAC, 1200.0, probes.Answer("def", 30.0, (0, 0, 0), answer.facts))
    assert (rebooted[MAC].ready_at, rebooted[MAC].down_at, probes.is_failing(rebooted[MAC])) == (1200.0, None, False)
    assert probes.parse_probes(probes.format_probes(rebooted).decode()) == rebooted


def test_status_rows_say_stage_version_and_drift() -> None:
    nodes = [
        Node("node01", MAC, IPv4Address("10.10.0.166"), "default", "compute"),
        Node("node10", "52:54:00:00:00:03", IPv4Address("10.10.0.168"), "default", "compute"),
        Node("node02", "52:54:00:00:00:02", IPv4Address("10.10.0.167"), "default", "compute"),
    ]
    answer = probes.parse_answer(OUTPUT.replace("default.versions/1", "default.versions/20261202-145142"))
    inputs = report.Inputs(
        nodes=nodes,
        states={},
        leases=[Lease(0, "52:54:00:00:00:02", IPv4Address("10.10.0.200"), None, None)],
        events=[*bootlog.parse_access_log(ACCESS), Event(T0 + 5, Stage.SCRIPT, ip="10.10.0.200")],
        probes=probes.answered({}, MAC, T0 + 80, answer),
        current={"default": "20261202-150000"},
    )
    rows = report.compute(inputs, T0 + 100)
    assert [(r.name, r.state, r.stage, r.since) for r in rows] == [
        ("node01", "up", Stage.SSH, T0 + 80),
        ("node02", "booting", Stage.SCRIPT, T0 + 5),  # known by its dynamic lease's address
        ("node10", "unknown", Stage.REGISTERED, None),
    ]
    one = rows[0]
    assert (one.booted_version, one.current_version, one.drift, one.uptime) == (
        "20261202-145142",
        "20261202-150000",
        True,
        120.5 - 80 + 100,
    )
    assert one.as_json() | {"load": None} == {
        "name": "node01",
        "mac": MAC,
        "ip": "10.10.0.166",
        "group": "compute",
        "image": "default",
        "state": "up",
        "stage": "ssh-ready",
        "stage_since": "2026-12-02T14:53:10Z",
        "last_seen": "2026-12-02T14:53:10Z",
        "booted_version": "20261202-145142",
        "current_version": "20261202-150000",
        "drift": True,
        "uptime_seconds": 140,
        "load": None,
    }
    assert rows[2].drift is None
    assert report.images_in_use(rows) == [
        {
            "name": "default",
            "current_version": "20261202-150000",
            "versions": [{"version": "20261202-145142", "nodes": ["node01"]}],
        }
    ]
