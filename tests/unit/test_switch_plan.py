"""The switch plan: roles from addresses, one VNI per server at the hub, idempotent up."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from kestrel.config import SwitchConfig
from kestrel.errors import InputError
from kestrel.net.switch import plan_down, plan_up, role_of
from kestrel.sysroot import Sysroot
from tests.treestate import dry_run

SWITCH = SwitchConfig.model_validate(
    {
        "hub": "172.16.0.1",
        "servers": [{"name": "srv1", "address": "172.16.0.11"}, {"name": "srv2", "address": "172.16.0.12"}],
    }
)


def test_role_comes_from_the_local_address() -> None:
    assert role_of(SWITCH, {IPv4Address("127.0.0.1"), IPv4Address("172.16.0.1")}) == "hub"
    assert role_of(SWITCH, {IPv4Address("172.16.0.12")}) == "srv2"
    with pytest.raises(InputError, match="none of this host's addresses"):
        role_of(SWITCH, {IPv4Address("127.0.0.1")})


def test_hub_gets_one_vxlan_per_server_in_one_bridge() -> None:
    expected = [
        "ip link add kvxhub type bridge stp_state 0 forward_delay 0",
        "ip link set kvxhub mtu 1450 up",
        "ip link add kvxsrv1 type vxlan id 100 remote 172.16.0.11 local 172.16.0.1 dstport 4789 dev eth0",
        "ip link set kvxsrv1 master kvxhub",
        "ip link set kvxsrv1 mtu 1450 up",
        "ip link add kvxsrv2 type vxlan id 101 remote 172.16.0.12 local 172.16.0.1 dstport 4789 dev eth0",
        "ip link set kvxsrv2 master kvxhub",
        "ip link set kvxsrv2 mtu 1450 up",
    ]
    assert plan_up(SWITCH, "hub", set()) == [line.split() for line in expected]


def test_server_keeps_its_bridge_on_down_and_up_is_idempotent() -> None:
    assert plan_up(SWITCH, "srv2", {"kbr0", "kvx0"}) == []
    assert plan_up(SWITCH, "srv2", {"kbr0"})[0][:8] == ["ip", "link", "add", "kvx0", "type", "vxlan", "id", "101"]
    assert plan_down(SWITCH, "srv2", {"kbr0", "kvx0"}) == [["ip", "link", "del", "kvx0"]]


def test_duplicate_server_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="two hosts have the same address"):
        SwitchConfig.model_validate({"hub": "172.16.0.1", "servers": [{"name": "a", "address": "172.16.0.1"}]})


def test_cli_dry_run_prints_the_commands(tree: Sysroot) -> None:
    config = tree.path("/etc/kestrel/kestrel.yaml")
    config.write_text(
        config.read_text()
        + (  # this host is the hub: 127.0.0.1 is its own
            "switch:\n  hub: 127.0.0.1\n  underlay_interface: lo\n  device_prefix: kt-\n"
            "  servers:\n    - {name: s1, address: 172.31.251.11}\n"
        )
    )
    assert dry_run("switch", tree.root, "up", "--dry-run") == [
        "Would run ip link add kt-hub type bridge stp_state 0 forward_delay 0",
        "Would run ip link set kt-hub mtu 1450 up",
        "Would run ip link add kt-s1 type vxlan id 100 remote 172.31.251.11 local 127.0.0.1 dstport 4789 dev lo",
        "Would run ip link set kt-s1 master kt-hub",
        "Would run ip link set kt-s1 mtu 1450 up",
    ]
    assert dry_run("switch", tree.root, "down", "--dry-run") == ["Nothing to do"]
