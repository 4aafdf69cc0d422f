"""Magic packets: recognising them in frames (the VM listener's matcher)."""

from __future__ import annotations

import pytest
import wakeonlan
from hypothesis import given
from hypothesis import strategies as st

from kestrel.errors import InputError
from kestrel.nodes.registry import Node, parse_registry
from kestrel.nodes.wake import select_targets
from kestrel.vm.listener import find_magic_macs

MAC = "52:54:00:aa:bb:01"


def test_finds_the_mac_of_a_magic_packet_inside_a_frame() -> None:
    frame = b"\x00" * 42 + wakeonlan.create_magic_packet(MAC) + b"\x00" * 4
    assert find_magic_macs(frame) == {MAC}


def test_ignores_broken_or_short_packets() -> None:
    packet = wakeonlan.create_magic_packet(MAC)
    assert find_magic_macs(packet[:-1]) == set()
    assert find_magic_macs(packet[:50] + b"\x77" + packet[51:]) == set()
    assert find_magic_macs(b"\xff" * 200) == set()


def test_leading_ff_bytes_do_not_hide_the_packet() -> None:
    assert find_magic_macs(b"\xff" * 9 + wakeonlan.create_magic_packet(MAC)) == {MAC}


@given(st.binary(min_size=6, max_size=6).filter(lambda b: b != b"\xff" * 6), st.binary(max_size=60))
def test_any_mac_round_trips(mac: bytes, noise: bytes) -> None:
    text = ":".join(f"{b:02x}" for b in mac)
    assert text in find_magic_macs(noise + wakeonlan.create_magic_packet(text))


def _nodes() -> list[Node]:
    return parse_registry(
        "52:54:00:00:00:01,set:img-default,set:grp-compute,10.10.0.101,node01\n"
        "52:54:00:00:00:02,set:img-default,set:grp-gpu,10.10.0.102,node02\n"
        "52:54:00:00:00:03,set:img-default,set:grp-compute,10.10.0.103,node03\n"
    )


def test_select_by_name_group_all_and_mac() -> None:
    nodes = _nodes()
    assert select_targets(nodes, ["node02"], None, False, []) == [("node02", "52:54:00:00:00:02")]
    assert [n for n, _ in select_targets(nodes, [], "compute", False, [])] == ["node01", "node03"]
    assert len(select_targets(nodes, ["node01"], None, True, ["52-54-00-00-00-01"])) == 3
    assert select_targets(nodes, [], None, False, ["52:54:00:00:00:03", "aa:bb:cc:dd:ee:ff"]) == [
        ("node03", "52:54:00:00:00:03"),
        ("", "aa:bb:cc:dd:ee:ff"),
    ]


def test_select_refuses_unknown_or_nothing() -> None:

    with pytest.raises(InputError, match=r"^no node named 'node09' \(see kestrel-nodes list\)$"):
        select_targets(_nodes(), ["node09"], None, False, [])
    with pytest.raises(InputError, match="no node is in group 'io'"):
        select_targets(_nodes(), [], "io", False, [])
    with pytest.raises(InputError, match="name the nodes"):
        select_targets(_nodes(), [], None, False, [])
    with pytest.raises(InputError, match="--mac: 'zz' is not a MAC address"):
        select_targets(_nodes(), [], None, False, ["zz"])
