"""Tests that stop or reboot lab nodes: they run last and leave both nodes SSH-ready again."""

from __future__ import annotations

import time

import pytest

from tests.e2e.lab import kestrel, on


def test_power_off_then_wake_on_lan(lab: str) -> None:
    kestrel("kestrel-vm", "stop", "node02")
    gone = kestrel("kestrel-nodes", "exec", "--connect-timeout", "3", "node02", "--", "true", check=False)
    assert gone.returncode == 1
    wake = kestrel("kestrel-nodes", "wake", "node02")
    assert "Sent magic packet for node02 (" in wake.stderr
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        probe = kestrel("kestrel-nodes", "exec", "--connect-timeout", "5", "node02", "--", "true", check=False)
        if probe.returncode == 0:
            break
        time.sleep(5)
    else:
        pytest.fail("node02 did not answer SSH within 600 s of its magic packet")
    assert on("node02", "hostname") == "node02: node02\n"
