"""dnsmasq's leases file: fixture lines, the warnings for bad ones (exact), MAC normalisation properties."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.names import normalize_mac
from kestrel.nodes.leases import Lease, latest_by_mac, parse_leases

LEASES = """\
1795000000 52:54:00:aa:00:01 10.10.0.150 node-a 01:52:54:00:aa:00:01
1795000100 52:54:00:AA:00:02 10.10.0.151 * *
0 52:54:00:aa:00:03 10.10.0.152 * ff:00:00:00:01:00:01:2c:00
1795000000 52:54:00:aa:00:04 10.10.0.153
soon 52:54:00:aa:00:05 10.10.0.154 * *
1795000000 52:54:00:zz:00:06 10.10.0.155 * *
1795000000 52:54:00:aa:00:07 10.10.0.300 * *

duid 00:01:00:01:2c:00:00:01:52:54:00:00:00:01
1795000000 12345678 fd10::15 node-a 00:01:00:01:2c:00:00:01:52:54:00:aa:00:01
"""


def test_fixture_leases_and_exact_warnings() -> None:
    leases, warnings = parse_leases(LEASES, "/var/lib/kestrel/dnsmasq.leases")
    assert leases == [
        Lease(1795000000, "52:54:00:aa:00:01", IPv4Address("10.10.0.150"), "node-a", "01:52:54:00:aa:00:01"),
        Lease(1795000100, "52:54:00:aa:00:02", IPv4Address("10.10.0.151"), None, None),
        Lease(0, "52:54:00:aa:00:03", IPv4Address("10.10.0.152"), None, "ff:00:00:00:01:00:01:2c:00"),
    ]
    assert warnings == [
        "/var/lib/kestrel/dnsmasq.leases:4: expected 'EXPIRY MAC IP NAME CLIENTID', got 3 fields; line skipped",
        "/var/lib/kestrel/dnsmasq.leases:5: expiry 'soon' is not a number; line skipped",
        "/var/lib/kestrel/dnsmasq.leases:6: '52:54:00:zz:00:06' is not a MAC address; line skipped",
        "/var/lib/kestrel/dnsmasq.leases:7: '10.10.0.300' is not an IPv4 address; line skipped",
    ]


def test_empty_file_has_no_leases() -> None:
    assert parse_leases("") == ([], [])


def test_latest_lease_per_mac_wins_and_infinite_is_latest() -> None:
    text = (
        "100 52:54:00:aa:00:01 10.10.0.150 * *\n300 52:54:00:aa:00:02 10.10.0.151 * *\n"
        "200 52:54:00:aa:00:01 10.10.0.160 * *\n0 52:54:00:aa:00:02 10.10.0.161 * *\n"
        "400 52:54:00:aa:00:02 10.10.0.162 * *\n"
    )
    leases, _ = parse_leases(text)
    assert [(lease.mac, str(lease.ip)) for lease in latest_by_mac(leases)] == [
        ("52:54:00:aa:00:01", "10.10.0.160"),
        ("52:54:00:aa:00:02", "10.10.0.161"),
    ]


mac_bytes = st.binary(min_size=6, max_size=6)


@given(mac_bytes, st.sampled_from([":", "-", "."]), st.booleans())
def test_every_spelling_of_a_mac_normalises_to_lowercase_colons(raw: bytes, sep: str, upper: bool) -> None:
    hexed = raw.hex()
    if sep == ".":
        text = ".".join(hexed[i : i + 4] for i in range(0, 12, 4))
    else:
        text = sep.join(hexed[i : i + 2] for i in range(0, 12, 2))
    canonical = ":".join(hexed[i : i + 2] for i in range(0, 12, 2))
    assert normalize_mac(text.upper() if upper else text) == canonical
    assert normalize_mac(canonical) == canonical


@given(st.text(max_size=20))
def test_anything_else_is_refused_or_canonical(text: str) -> None:
    try:
        mac = normalize_mac(text)
    except ValueError as e:
        assert str(e) == f"{text!r} is not a MAC address"
    else:
        assert len(mac) == 17 and mac == mac.lower() and mac.count(":") == 5


@pytest.mark.parametrize(
    "text", ["52:54:00:aa:bb", "52:54-00:aa:bb:01", "5254.00aa.bb01.02", "a;rm -rf /", "52:54:00:aa:bb:01;", ""]
)
def test_near_macs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a MAC address"):
        normalize_mac(text)
