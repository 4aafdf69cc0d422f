"""A DHCP probe: broadcast one DISCOVER on an interface and collect the OFFERs that answer it (which DHCP
servers are on a network, what a PXE or iPXE client would be told). Packets as RFC 2131/2132 and PXE say."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

_COOKIE = b"\x63\x82\x53\x63"
_DISCOVER, _OFFER = 1, 2
CLIENT_PORT, SERVER_PORT = 68, 67


@dataclass(frozen=True)
class Offer:
    """One answer: who sent it (option 54, else the source), the address offered (0.0.0.0 from a proxy), the boot
    file (option 67, else the BOOTP file field) and the next server."""

    server: IPv4Address
    address: IPv4Address
    boot_file: str
    next_server: IPv4Address
    vendor_class: str

    @property
    def is_proxy(self) -> bool:
        """A ProxyDHCP answer: boot information without an address."""
        return self.address == IPv4Address(0)


def discover_packet(mac: bytes, xid: int, *, pxe: bool = False, ipxe: bool = False) -> bytes:
    """A DHCPDISCOVER from MAC with the broadcast flag; PXE adds the PXE ROM's identity (vendor class, client
    architecture, UUID), IPXE also iPXE's (option 175, user class)."""
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4), bytes(4), mac, b"", b""
    )
    options = _option(53, bytes([_DISCOVER])) + _option(55, bytes([1, 3, 6, 15, 43, 60, 66, 67]))
    if pxe or ipxe:
        options += _option(60, b"PXEClient:Arch:00000:UNDI:002001")
        options += _option(93, b"\0\0") + _option(94, b"\1\2\1") + _option(97, b"\0" + os.urandom(16))
    if ipxe:
        options += _option(77, b"iPXE") + _option(175, _option(19, b"\1"))
    return head + _COOKIE + options + b"\xff"


def parse_offer(packet: bytes, xid: int, source: str) -> Offer | None:
    """The OFFER in PACKET if it answers XID, else None (anything else on port 68 is ignored)."""
    if len(packet) < 240 or packet[0] != 2 or packet[236:240] != _COOKIE:
        return None
    if struct.unpack("!I", packet[4:8])[0] != xid:
        return None
    options = _parse_options(packet[240:])
    if options.get(53) != bytes([_OFFER]):
        return None
    server = options.get(54)
    file_field = packet[108:236].split(b"\0", 1)[0]
    return Offer(
        server=IPv4Address(server) if server and len(server) == 4 else IPv4Address(source),
        address=IPv4Address(packet[16:20]),
        boot_file=(options.get(67) or file_field).split(b"\0", 1)[0].decode("latin-1"),
        next_server=IPv4Address(packet[20:24]),
        vendor_class=options.get(60, b"").decode("latin-1"),
    )


def probe(interface: str, *, wait: float = 4.0, pxe: bool = False, ipxe: bool = False) -> list[Offer]:
    """Broadcast a DISCOVER on INTERFACE (from a random, locally administered MAC) and return every OFFER
    received within WAIT seconds. Needs root (port 68, SO_BINDTODEVICE)."""
    mac = bytes([0x02]) + os.urandom(5)
    xid = struct.unpack("!I", os.urandom(4))[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    with contextlib.closing(sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("", CLIENT_PORT))
        sock.sendto(discover_packet(mac, xid, pxe=pxe, ipxe=ipxe), ("255.255.255.255", SERVER_PORT))
        offers: list[Offer] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            packet, (source, _) = sock.recvfrom(4096)
            offer = parse_offer(packet, xid, source)
            if offer is not None and offer not in offers:
                offers.append(offer)
        return offers


def _option(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def _parse_options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        size = data[i + 1]
        out[code] = out.get(code, b"") + data[i + 2 : i + 2 + size]  # RFC 3396: repeated options concatenate
        i += 2 + size
    return out
