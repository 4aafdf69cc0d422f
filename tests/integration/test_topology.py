"""The namespace fixture's promise: whatever it made is gone afterwards, processes inside included."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from kestrel.net import netns
from kestrel.net.netns import Topology
from tests.conftest import need_root


def test_destroy_removes_namespaces_devices_and_their_processes() -> None:
    need_root()
    topo = Topology(prefix=f"kt-{secrets.token_hex(2)[:3]}")
    with pytest.raises(RuntimeError):
        try:
            a = topo.add_netns("a")
            b = topo.add_netns("b")
            bridge = topo.add_bridge(a, "br", "10.31.0.1/24")
            topo.add_veth(a, "pa", b, "eb", master_a=bridge, address_b="10.31.0.2/24")
            topo.add_tap(a, "tap", master=bridge)
            sleeper = subprocess.Popen(["ip", "netns", "exec", b, "sleep", "300"])
            ping = subprocess.run(
                ["ip", "netns", "exec", b, "ping", "-c", "1", "-W", "2", "10.31.0.1"], capture_output=True, timeout=10
            )
            assert ping.returncode == 0, ping.stdout
            raise RuntimeError("the test fails here")
        finally:
            assert topo.destroy() == []
    assert sleeper.wait(timeout=10) != 0
    assert not netns.exists(a) and not netns.exists(b)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert topo.prefix not in links
