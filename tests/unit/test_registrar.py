"""The lease hook queues, the registrar applies in batches: order per MAC, one write per file per batch,
nothing lost across a kill -9, hostile queue files dropped. The rendered hook and the real programs run here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from kestrel.nodes import forgotten, leasequeue
from kestrel.nodes.registry import load_registry
from kestrel.nodes.state import State, load_states
from kestrel.sysroot import Sysroot
from tests.conftest import eventually
from tests.treestate import kestrel

MANAGED = [
    "/etc/kestrel/nodes",
    "/var/lib/kestrel/nodes.json",
    "/etc/kestrel/hosts",
    "/etc/hosts",
    *(f"/etc/kestrel/hostfiles/{f}" for f in ("openmpi", "mpich", "slurm", "hosts")),
]


@pytest.fixture
def frontend(tree: Sysroot) -> Sysroot:
    """A rendered frontend (its lease hook, the empty queue), no service running."""
    proc = kestrel("reconfigure", tree.root, "-q", "--frontend")
    assert proc.returncode == 0, proc.stderr
    return tree


def hook(root: Sysroot, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The rendered lease hook, as dnsmasq runs it (ENV: the DNSMASQ_* variables it sets)."""
    argv = [root.sys("/usr/local/lib/kestrel/lease-hook"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env or {})


def mac(i: int) -> str:
    return f"52:54:00:cc:{i >> 8:02x}:{i & 255:02x}"


def ip(i: int) -> str:
    return f"10.10.0.{2 + i}"


def drain(root: Sysroot) -> list[str]:
    proc = kestrel("nodes", root.root, "registrar", "--once")
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def queued(root: Sysroot) -> list[str]:
    return [p.read_text() for p in leasequeue.queued_files(root)]


def test_the_hook_queues_lease_events_in_order_and_nothing_else(frontend: Sysroot) -> None:
    for args in (["add", mac(1), ip(1), "asked-name"], ["del", mac(1), ip(1)], ["add", mac(2), ip(2)]):
        assert hook(frontend, *args).returncode == 0
    for args in (["tftp", "1234", ip(1), "/srv/x"], ["arp-add", mac(3), ip(3)], ["init"], []):
        assert hook(frontend, *args).returncode == 0, args
    assert queued(frontend) == [f"add {mac(1)} {ip(1)}\n", f"del {mac(1)} {ip(1)}\n", f"add {mac(2)} {ip(2)}\n"]
    assert [p.name for p in leasequeue.queued_files(frontend)] == [f"{i:012d}.ev" for i in (1, 2, 3)]


def test_without_leases_of_its_own_the_hook_queues_arp_add(frontend: Sysroot) -> None:
    """network.dhcp proxy: dnsmasq sees nodes only in its ARP table, so arp-add registers them."""
    config = frontend.path("/etc/kestrel/kestrel.yaml")
    config.write_text(config.read_text().replace("network:\n", "network:\n  dhcp: proxy\n", 1))
    assert kestrel("reconfigure", frontend.root, "-q", "--frontend").returncode == 0
    hook(frontend, "arp-add", mac(1), ip(1))
    hook(frontend, "arp-del", mac(1), ip(1))
    assert queued(frontend) == [f"arp-add {mac(1)} {ip(1)}\n"]
    drain(frontend)
    ((node, state),) = [(n, load_states(frontend)[n.mac]) for n in load_registry(frontend)]
    assert (node.mac, str(node.ip), state.state) == (mac(1), ip(1), State.UP)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["add", "a;rm -rf /", ip(1)], "add event with a malformed MAC address ignored"),
        (["add", "52:54:00:cc:00:1", ip(1)], "add event with a malformed MAC address ignored"),
        (["del", f"{mac(1)}\nadd", ip(1)], "del event with a malformed MAC address ignored"),
        (["add", mac(1), "10.10.0.150;reboot"], "add event with a malformed IPv4 address ignored"),
        (["add", mac(1), "10.10.0"], "add event with a malformed IPv4 address ignored"),
        (["old", mac(1), "1.2.3.4.5"], "old event with a malformed IPv4 address ignored"),
        (["add", mac(1), "1" * 20 + ".1.1.1"], "add event with a malformed IPv4 address ignored"),
        (["add", mac(1)], "add event with a malformed IPv4 address ignored"),
    ],
)
def test_the_hook_refuses_malformed_arguments(frontend: Sysroot, args: list[str], why: str) -> None:
    proc = hook(frontend, *args)
    assert (proc.returncode, proc.stderr) == (2, f"kestrel lease hook: {why}\n")
    assert queued(frontend) == []


def test_old_of_a_registered_mac_is_queued_only_when_its_lease_is_renewed(frontend: Sysroot) -> None:
    hook(frontend, "add", mac(1), ip(1))
    drain(frontend)
    replayed = {"DNSMASQ_DATA_MISSING": "1"}  # dnsmasq's start: every lease of its lease file, once
    hook(frontend, "old", mac(1), ip(1), env=replayed)
    hook(frontend, "old", mac(2), ip(2), env=replayed)  # a new MAC: registered by the registrar
    frontend.path(forgotten.FORGOTTEN_PATH).write_bytes(forgotten.format_forgotten({mac(3): 1}))
    hook(frontend, "old", mac(3), ip(3), env=replayed)  # a removed node's kept lease: it stays removed
    assert queued(frontend) == [f"old {mac(2)} {ip(2)}\n"]
    drain(frontend)
    # a renewal (script-on-renewal): the node rebooted with its lease, it joins Slurm again
    hook(frontend, "old", mac(1), ip(1), env={"DNSMASQ_TIME_REMAINING": "43200"})
    assert queued(frontend) == [f"old {mac(1)} {ip(1)}\n"]
    assert "script-on-renewal\n" in frontend.path("/etc/dnsmasq.d/kestrel.conf").read_text()


def test_add_then_del_of_one_mac_in_one_batch_ends_down(frontend: Sysroot) -> None:
    hook(frontend, "add", mac(1), ip(1))
    hook(frontend, "del", mac(1), ip(1))
    hook(frontend, "del", mac(2), ip(2))
    hook(frontend, "add", mac(2), ip(2))
    said = drain(frontend)
    assert said.count("Applied 4 lease events") == 1
    (one, two) = load_registry(frontend)
    assert (one.mac, two.mac) == (mac(1), mac(2))
    states = load_states(frontend)
    assert (states[mac(1)].state, states[mac(2)].state) == (State.DOWN, State.UP)
    openmpi = frontend.path("/etc/kestrel/hostfiles/openmpi").read_text()
    assert f"{one.name} slots" not in openmpi and f"{two.name} slots=1" in openmpi
    assert queued(frontend) == []


def test_a_batch_of_100_events_writes_each_managed_file_once(frontend: Sysroot) -> None:
    for i in range(100):
        assert hook(frontend, "add", mac(i), ip(i)).returncode == 0
    said = drain(frontend)
    wrote = [line.split(" ", 1)[1] for line in said if line.startswith(("Wrote ", "Created "))]
    assert sorted(wrote) == sorted(frontend.sys(p) for p in MANAGED)
    assert said.count("Applied 100 lease events") == 1
    nodes = load_registry(frontend)
    assert [(n.name, n.mac, str(n.ip)) for n in nodes] == [(f"node{i + 1:02d}", mac(i), ip(i)) for i in range(100)]
    assert frontend.path("/etc/kestrel/hostfiles/openmpi").read_text().count(" slots=1\n") == 100


def test_hostile_queue_files_are_dropped_and_the_rest_applied(frontend: Sysroot) -> None:
    folder = frontend.path(leasequeue.QUEUE_DIR)
    hook(frontend, "add", mac(1), ip(1))
    (folder / "000000000002.ev").write_bytes(b"add 52:54:00:cc:00:02 10.10.0.102 extra\n")
    (folder / "000000000003.ev").write_bytes(b"add 52:54:00:cc:00:03 10.10.0.999\n")
    (folder / "000000000004.ev").write_bytes(b"add " + b"x" * 500 + b"\n")
    (folder / "000000000005.ev").write_bytes(b"add 52:54:00:cc:00:05 \xff\n")
    os.symlink("/etc/shadow", folder / "000000000006.ev")
    (folder / "notes.txt").write_text("not an event\n")
    hook(frontend, "add", mac(7), ip(7))
    said = drain(frontend)
    where = frontend.sys(leasequeue.QUEUE_DIR)
    assert [line for line in said if line.startswith("Warning:")] == [
        f"Warning: {where}/000000000002.ev: expected 'ACTION MAC IP', got 4 fields; event dropped",
        f"Warning: {where}/000000000003.ev: '10.10.0.999' is not an IPv4 address; event dropped",
        f"Warning: {where}/000000000004.ev: longer than 128 bytes; event dropped",
        f"Warning: {where}/000000000005.ev: not ASCII; event dropped",
        f"Warning: {where}/000000000006.ev: unreadable (Too many levels of symbolic links); event dropped",
    ]
    assert [n.mac for n in load_registry(frontend)] == [mac(1), mac(7)]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_an_event_being_written_holds_back_the_later_ones(frontend: Sysroot) -> None:
    folder = frontend.path(leasequeue.QUEUE_DIR)
    (folder / "000000000001.ev").write_bytes(f"add {mac(1)} ".encode())  # its writer has not finished
    hook(frontend, "del", mac(2), ip(2))
    assert [f.name for f in leasequeue.queued_files(frontend)] == ["000000000001.ev", "000000000002.ev"]
    drain(frontend)
    assert load_registry(frontend) == [] and len(queued(frontend)) == 2
    stale = time.time() - leasequeue.STALE_SECONDS - 1
    os.utime(folder / "000000000001.ev", (stale, stale))
    hook(frontend, "add", mac(3), ip(3))
    said = drain(frontend)
    assert f"Warning: {folder}/000000000001.ev: left incomplete by its writer; event dropped" in said
    assert [n.mac for n in load_registry(frontend)] == [mac(3)]


def registrar(root: Sysroot) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(root.root), "registrar"],
        stderr=subprocess.PIPE,
        text=True,
        env=clean,
    )
    assert proc.stderr is not None
    assert "Registrar waiting for lease events" in proc.stderr.readline()
    return proc


def test_the_queue_keeps_events_across_a_kill_of_the_registrar(frontend: Sysroot) -> None:
    count = 150
    proc = registrar(frontend)
    try:
        for i in range(count):
            assert hook(frontend, "add", mac(i), ip(i)).returncode == 0
            if i == 40:
                assert eventually(lambda: frontend.path("/etc/kestrel/nodes").exists(), 10, 0.01)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        # down since the 41st event: what came after waits in the queue
        assert len(queued(frontend)) >= count - 41 and len(load_registry(frontend)) < count
    finally:
        proc.kill()
        proc.wait(10)
    proc = registrar(frontend)
    try:
        assert eventually(lambda: len(load_registry(frontend)) == count and not queued(frontend), 30)
        states = load_states(frontend)
        assert all(states[mac(i)].state is State.UP for i in range(count))
        hosts = frontend.path("/etc/hosts").read_text()
        assert all(f"{n.ip}\t{n.name}." in hosts for n in load_registry(frontend))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait(10)
