"""nodes.auto_register: approve: a machine that takes a lease waits in the pending list until approved (the
programs as users run them)."""

from __future__ import annotations

import json
import subprocess

import pytest

from kestrel.nodes.registry import load_registry
from kestrel.sysroot import Sysroot
from tests.conftest import write_config
from tests.treestate import dry_run, kestrel

A, B = "52:54:00:cc:00:01", "52:54:00:cc:00:02"


def nodes(tree: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    return kestrel("nodes", tree.root, *args)


def ok(tree: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    proc = nodes(tree, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def approving(tree: Sysroot) -> Sysroot:
    path = tree.path("/etc/kestrel/kestrel.yaml")
    write_config(tree, path.read_text().replace("auto_register: true", "auto_register: approve"))
    return tree


def pending(tree: Sysroot) -> list[dict[str, object]]:
    return list(json.loads(ok(tree, "pending", "--json").stdout))


def test_a_new_mac_waits_and_approve_registers_it_at_its_leased_address(approving: Sysroot) -> None:
    ok(approving, "lease-event", "add", A, "10.10.0.150")
    ok(approving, "lease-event", "old", A, "10.10.0.151")
    assert load_registry(approving) == []
    [waiting] = pending(approving)
    assert waiting["mac"] == A and waiting["ip"] == "10.10.0.151"
    assert waiting["first_seen"] <= waiting["last_seen"]  # type: ignore[operator]
    lines = dry_run("nodes", approving.root, "approve", A, "--dry-run")
    assert lines[0] == f"Would register node01 ({A}, 10.10.0.151)"
    done = ok(approving, "approve", A, "--name", "gpu1", "--group", "gpu", "--image", "big")
    assert f"Registered gpu1 ({A}, 10.10.0.151)" in done.stderr
    [node] = load_registry(approving)
    assert (node.name, node.group, node.image, str(node.ip)) == ("gpu1", "gpu", "big", "10.10.0.151")
    assert pending(approving) == []
    ok(approving, "lease-event", "add", A, "10.10.0.151")  # registered now: it never waits again
    assert pending(approving) == []


def test_approve_all_and_reject(approving: Sysroot) -> None:
    for mac, ip in ((A, "10.10.0.150"), (B, "10.10.0.151"), ("52:54:00:cc:00:03", "10.10.0.152")):
        ok(approving, "lease-event", "add", mac, ip)
    ok(approving, "reject", "52:54:00:CC:00:03")
    assert [m["mac"] for m in pending(approving)] == [A, B]
    bad = nodes(approving, "approve", "all", "--name", "one")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "kestrel-nodes: --name 'one' names one node: approve one MAC with it, not 2"
    ]
    ok(approving, "approve", "all")
    assert sorted(n.mac for n in load_registry(approving)) == [A, B]
    assert pending(approving) == []


def test_bad_approvals_change_nothing(approving: Sysroot) -> None:
    ok(approving, "lease-event", "add", A, "10.10.0.150")
    for args, line in (
        (["approve", B], f"kestrel-nodes: {B} is not pending (see kestrel-nodes pending)"),
        (["approve", "nonsense"], "kestrel-nodes: 'nonsense' is not a MAC address"),
        (["reject", "all", A], "kestrel-nodes: reject: give MACs or all, not both"),
        (["approve", A, "--name", "bad_name"], None),
    ):
        proc = nodes(approving, *args)
        assert proc.returncode == 2, proc
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        if line:
            assert proc.stderr.strip().startswith(line.split(" is not a MAC")[0]), proc.stderr
    assert load_registry(approving) == []
    assert [m["mac"] for m in pending(approving)] == [A]


def test_true_registers_and_false_ignores_with_no_pending_list(tree: Sysroot) -> None:
    ok(tree, "lease-event", "add", A, "10.10.0.150")
    assert [n.mac for n in load_registry(tree)] == [A]
    path = tree.path("/etc/kestrel/kestrel.yaml")
    write_config(tree, path.read_text().replace("auto_register: true", "auto_register: false"))
    ok(tree, "lease-event", "add", B, "10.10.0.151")
    assert [n.mac for n in load_registry(tree)] == [A]
    assert pending(tree) == []
    assert not tree.path("/var/lib/kestrel/pending.json").exists()
