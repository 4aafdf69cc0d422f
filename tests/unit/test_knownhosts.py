"""known_hosts: rendering from image keys, OpenSSH pattern matching (with negation), trust decisions."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from kestrel.nodes import knownhosts
from kestrel.nodes.knownhosts import HostKey

A = HostKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIA" + "a" * 42 + "=")
B = HostKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIB" + "b" * 42 + "=")


def test_parse_public_key() -> None:
    assert knownhosts.parse_public_key(f"{A.type} {A.blob} root@image\n", "k.pub") == A
    with pytest.raises(ValueError, match=r"^k.pub: not an SSH public key of a known type$"):
        knownhosts.parse_public_key("ssh-dss AAAA", "k.pub")
    with pytest.raises(ValueError, match=r"^k.pub: the key is not valid base64$"):
        knownhosts.parse_public_key("ssh-ed25519 not-base64!", "k.pub")


def test_patterns() -> None:
    assert knownhosts.ip_pattern(IPv4Network("10.10.0.0/24")) == "10.10.0.*"
    assert knownhosts.ip_pattern(IPv4Network("10.10.0.0/20")) == "10.10.*"
    assert knownhosts.name_pattern("node{index:02d}") == "node*"
    assert knownhosts.name_pattern("c{index}-x") == "c*-x"


def test_matching_and_negation() -> None:
    text = knownhosts.render(
        [
            (["node01", "node01.cluster.local", "10.10.0.101"], A),
            (["node*", "*.cluster.local", "10.10.0.*", "!frontend", "!frontend.cluster.local", "!10.10.0.1"], B),
            (["node01", "node01.cluster.local", "10.10.0.101"], A),  # duplicate dropped
        ]
    )
    assert text.count("\n") == 2
    entries = knownhosts.parse("# comment\n@cert-authority * " + f"{A.type} {A.blob}\n" + text)
    assert len(entries) == 2
    assert knownhosts.is_trusted(entries, ["node01"], A)
    assert knownhosts.is_trusted(entries, ["node07", "10.10.0.107"], B)
    assert not knownhosts.is_trusted(entries, ["node07", "10.10.0.107"], A)
    # An image key can never pass for the frontend, under any of its names.
    for name in ("frontend", "frontend.cluster.local", "10.10.0.1"):
        assert not knownhosts.is_trusted(entries, [name], B)
    assert not knownhosts.is_trusted(entries, ["example.org", "192.168.1.5"], B)
