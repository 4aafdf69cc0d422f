"""known_hosts lines for the cluster: rendering from image host keys, parsing and matching (OpenSSH patterns)."""

from __future__ import annotations

import base64
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


@dataclass(frozen=True)
class HostKey:
    """One public host key: its type and base64 blob (the comment is dropped)."""

    type: str
    blob: str

    def line(self, hosts: Iterable[str]) -> str:
        return f"{','.join(hosts)} {self.type} {self.blob}"


def parse_public_key(text: str, where: str) -> HostKey:
    """A `.pub` file's content: `TYPE BASE64 [COMMENT]`; ValueError naming WHERE if it is not one."""
    fields = text.split()
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise ValueError(f"{where}: not an SSH public key of a known type")
    try:
        base64.b64decode(fields[1], validate=True)
    except ValueError:
        raise ValueError(f"{where}: the key is not valid base64") from None
    return HostKey(fields[0], fields[1])


def ip_pattern(network: IPv4Network) -> str:
    """A glob covering NETWORK (by whole octets: 10.10.0.0/24 -> 10.10.0.*; /20 -> 10.10.*)."""
    octets = str(network.network_address).split(".")
    keep = max(1, network.prefixlen // 8)
    return ".".join(octets[:keep]) + ".*"


def name_pattern(pattern: str) -> str:
    """nodes.name_pattern as a glob: 'node{index:02d}' -> 'node*'."""
    start, end = pattern.index("{"), pattern.index("}")
    return pattern[:start] + "*" + pattern[end + 1 :]


def render(entries: Iterable[tuple[list[str], HostKey]]) -> str:
    """known_hosts lines, one per (hosts, key), in the given order, duplicates dropped."""
    seen: set[str] = set()
    out: list[str] = []
    for hosts, key in entries:
        line = key.line(hosts)
        if line not in seen:
            seen.add(line)
            out.append(line + "\n")
    return "".join(out)


@dataclass(frozen=True)
class Entry:
    patterns: tuple[str, ...]
    key: HostKey

    def matches(self, host: str) -> bool:
        """OpenSSH rules: a negated pattern that matches excludes the host, whatever else matches."""
        host = host.lower()
        hit = False
        for p in self.patterns:
            negated = p.startswith("!")
            if fnmatch.fnmatchcase(host, p[1:].lower() if negated else p.lower()):
                if negated:
                    return False
                hit = True
        return hit


def parse(text: str) -> list[Entry]:
    """Plain known_hosts entries; marker lines (@cert-authority, @revoked) and hashed names are skipped."""
    found = []
    for raw in text.splitlines():
        fields = raw.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@", "|")) or fields[1] not in KEY_TYPES:
            continue
        found.append(Entry(tuple(fields[0].split(",")), HostKey(fields[1], fields[2])))
    return found


def is_trusted(entries: Iterable[Entry], hosts: Iterable[str], key: HostKey) -> bool:
    """True if KEY is listed for any of HOSTS (a node's name and its address)."""
    wanted = list(hosts)
    return any(e.key == key and any(e.matches(h) for h in wanted) for e in entries)
