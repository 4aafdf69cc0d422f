"""dnsmasq's leases file: `EXPIRY MAC IP NAME CLIENTID` lines, parsed purely; bad lines become warnings."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address

from kestrel import names


@dataclass(frozen=True)
class Lease:
    expiry: int  # seconds since the epoch; 0 means an infinite lease
    mac: str
    ip: IPv4Address
    hostname: str | None  # what the client asked for ('*' in the file: none); never trusted as a name
    client_id: str | None


def parse_leases(text: str, where: str = "leases") -> tuple[list[Lease], list[str]]:
    """The IPv4 leases in TEXT and one warning `WHERE:LINE: why` per malformed line.

    The file is machine-written and a half-written or foreign line must not stop registration, so
    nothing here raises. The `duid` line and the DHCPv6 leases after it are not nodes' IPv4 leases.
    """
    leases: list[Lease] = []
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("duid "):
            continue
        fields = line.split()
        if len(fields) == 5 and ":" in fields[2]:
            continue  # a DHCPv6 lease: EXPIRY IAID IPV6 NAME DUID
        try:
            leases.append(parse_lease_line(fields))
        except ValueError as e:
            warnings.append(f"{where}:{number}: {e}; line skipped")
    return leases, warnings


def parse_lease_line(fields: list[str]) -> Lease:
    if len(fields) != 5:
        raise ValueError(f"expected 'EXPIRY MAC IP NAME CLIENTID', got {len(fields)} fields")
    expiry, mac, ip, hostname, client_id = fields
    if not expiry.isdigit():
        raise ValueError(f"expiry {expiry!r} is not a number")
    try:
        address = IPv4Address(ip)
    except AddressValueError:
        raise ValueError(f"{ip!r} is not an IPv4 address") from None
    return Lease(
        expiry=int(expiry),
        mac=names.normalize_mac(mac),
        ip=address,
        hostname=None if hostname == "*" else hostname,
        client_id=None if client_id == "*" else client_id,
    )


def latest_by_mac(leases: list[Lease]) -> list[Lease]:
    """One lease per MAC (the one that expires last), in the order the MACs first appear."""
    best: dict[str, Lease] = {}
    for lease in leases:
        have = best.get(lease.mac)
        if have is None or _later(lease, have):
            best[lease.mac] = lease
    return list(best.values())


def _later(a: Lease, b: Lease) -> bool:
    forever = 2**63
    return (a.expiry or forever) > (b.expiry or forever)
