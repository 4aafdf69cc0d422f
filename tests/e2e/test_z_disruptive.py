"""Tests that stop or reboot lab nodes: they run last, one boot cycle per node at most each, and leave both nodes
SSH-ready (and idle in Slurm) again. They print the figures of issues 13 and 14 (run with -s to see them)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import pytest

from tests.e2e.lab import NODES, ROOT, kestrel, on, states, wait_states

# An admin's configure script (phases/README.md): the change the rollout brings to the nodes.
CONFIGURE = ROOT / "etc/kestrel/node/configure.d/core_e2e-rollout"


def controller_starts() -> int:
    """How many times slurmctld started on the frontend (its log): a node that comes back needs no restart."""
    return (ROOT / "var/log/slurm/slurmctld.log").read_text().count("Running as primary controller")


def status() -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in json.loads(kestrel("kestrel-nodes", "status", "--json").stdout)}


def ssh_ready(node: str, seconds: float) -> float:
    """Seconds until NODE answers SSH, at most SECONDS."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        probe = kestrel("kestrel-nodes", "exec", "--connect-timeout", "5", node, "--", "true", check=False)
        if probe.returncode == 0:
            return time.monotonic() - started
        time.sleep(2)
    pytest.fail(f"{node} did not answer SSH within {seconds:g} s")


def test_rollout_after_a_configure_change_moves_both_nodes_to_the_new_version(lab: str) -> None:
    token, controller = secrets.token_hex(8), controller_starts()
    CONFIGURE.parent.mkdir(parents=True, exist_ok=True)
    CONFIGURE.write_text(f'#!/bin/sh\necho {token} > "$KESTREL_IMAGE_ROOT/etc/kestrel-e2e-rollout"\n')
    CONFIGURE.chmod(0o755)
    try:
        kestrel("kestrel-reconfigure", "--image", "default", timeout=600)
    finally:
        CONFIGURE.unlink()
    before = status()
    assert {n: (r["state"], r["drift"]) for n, r in before.items()} == dict.fromkeys(NODES, ("up", True)), before
    started = time.monotonic()
    rollout = kestrel("kestrel-nodes", "rollout", "--batch", "1", timeout=1500)
    took = time.monotonic() - started
    # "node01 is back on default 20261202-191334, SSH-ready (97 s)": each batch's reboot, timed from its request
    boots = re.findall(r"^(node0[12]) is back on default (\S+), SSH-ready \((\d+) s\)$", rollout.stderr, re.M)
    # the status monitor probes a booting node every second: up there shortly after the rollout saw it answer
    after, seen = status(), time.monotonic()
    while any(r["state"] != "up" for r in after.values()) and time.monotonic() - seen < 30:
        time.sleep(0.5)
        after = status()
    lag = time.monotonic() - seen
    current = after["node01"]["current_version"]
    assert current == before["node01"]["current_version"] != before["node01"]["booted_version"], (before, after)
    assert [(n, v) for n, v, _ in boots] == [(n, current) for n in NODES], rollout.stderr
    assert "Rolled out: 2 nodes updated (node01, node02)" in rollout.stderr, rollout.stderr
    for node, row in after.items():
        assert (row["state"], row["drift"], row["booted_version"]) == ("up", False, current), after
        assert on(node, "cat /etc/kestrel-e2e-rollout") == f"{node}: {token}\n"
    idle = wait_states(dict.fromkeys(NODES, "idle"), 120)
    assert controller_starts() == controller
    floor = sum(int(s) for _, _, s in boots)
    print(
        f"rollout --batch 1 of 2 nodes: {took:.0f} s (by hand: 334 s); the two reboots: {floor} s "
        f"({' + '.join(s for _, _, s in boots)}); up in status {lag:.1f} s and idle in Slurm {idle:.1f} s after "
        "the rollout returned"
    )


def test_poweroff_wait_then_wake_on_lan_and_slurm_sees_it_down_then_idle(lab: str) -> None:
    controller = controller_starts()
    started = time.monotonic()
    off = kestrel("kestrel-nodes", "poweroff", "--wait", "node02", timeout=700)
    assert re.search(r"^Down: node02 \(\d+ s\)$", off.stderr, re.M), off.stderr
    down_after = time.monotonic() - started
    gone = kestrel("kestrel-nodes", "exec", "--connect-timeout", "3", "node02", "--", "true", check=False)
    assert gone.returncode == 1 and "node02" in gone.stderr, gone.stderr
    # Slurm notices by itself (slurm.slurmd_timeout, 60 s in the lab): DOWN, not responding
    waited = time.monotonic()
    while states().get("node02", "").rstrip("*") != "down":
        assert time.monotonic() - waited < 240, states()
        time.sleep(5)
    slurm_down = time.monotonic() - waited
    # the VM's qemu exits with the guest's poweroff: the magic packet starts it again
    while (
        next(v for v in json.loads(kestrel("kestrel-vm", "list", "--json").stdout) if v["name"] == "node02")["state"]
        != "stopped"
    ):
        assert time.monotonic() - started < 600, "node02's qemu still runs after its poweroff"
        time.sleep(2)
    wake = kestrel("kestrel-nodes", "wake", "node02")
    assert "Sent magic packet for node02 (" in wake.stderr
    booted = ssh_ready("node02", 600)
    assert on("node02", "hostname") == "node02: node02\n"
    idle = wait_states(dict.fromkeys(NODES, "idle"), 120)
    print(
        f"poweroff --wait node02: {down_after:.0f} s; DOWN in sinfo {slurm_down:.0f} s later; "
        f"wake -> SSH ready {booted:.0f} s; SSH ready -> idle {idle:.1f} s (slurmctld not restarted)"
    )
    assert controller_starts() == controller
