"""Magic packets: recognising them in frames (the VM listener's matcher)."""

from __future__ import annotations

import wakeonlan
from hypothesis import given
from hypothesis import strategies as st

from kestrel.wake import find_magic_macs

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
