"""The lease-event queue: the lease hook writes one file per DHCP event, the registrar reads them in order and
removes them once applied. Every field is checked here, since dnsmasq passes on what clients send.

Format (a contract: the registrar and boot-stage readers depend on it): the folder QUEUE_DIR holds files named
`SEQ.ev`, SEQ twelve decimal digits; the hook gives each new event one more than the highest queued, so the
name order is dnsmasq's order. A file holds one line `ACTION MAC IP\\n` (ACTION add, old, del, or arp-add where
the frontend has no leases of its own); its mtime is the time of the event. A file without its final newline
is still being written.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from kestrel import names
from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

QUEUE_DIR = "/var/lib/kestrel/lease-events"
ACTIONS = ("add", "old", "del", "arp-add", "arp-del")
_NAME = re.compile(r"[0-9]{12}\.ev")
_MAX_BYTES = 128  # an event line is at most 'arp-add ' + MAC + ' ' + IPv4 + '\n' = 42 bytes
# A file still without its newline this long after it was made: its writer died between open and write.
STALE_SECONDS = 10.0


@dataclass(frozen=True)
class LeaseEvent:
    action: str
    mac: str
    ip: IPv4Address
    time: int  # seconds since the epoch


def parse_event(action: str, mac: str, ip: str, when: int = 0) -> LeaseEvent:
    """One event from the hook's arguments or a queued line; InputError naming the bad field."""
    mac = names.parse_mac(mac)
    address = names.parse_ip(ip)
    if action not in ACTIONS:
        raise InputError(f"lease event {action!r} is not add, old, del, arp-add or arp-del")
    return LeaseEvent(action, mac, address, when)


def parse_line(text: str, when: int = 0) -> LeaseEvent:
    fields = text.split(" ")
    if len(fields) != 3:
        raise InputError(f"expected 'ACTION MAC IP', got {len(fields)} fields")
    action, mac, ip = fields
    return parse_event(action, mac, ip, when)


@dataclass
class Pending:
    """The complete events at the head of the queue, the files they came from (also those dropped as bad) and
    one warning per dropped file."""

    events: list[LeaseEvent] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def queued_files(root: Sysroot) -> list[Path]:
    """The queue's event files in order (other names are not the hook's and are left alone)."""
    try:
        found = [e.name for e in os.scandir(root.path(QUEUE_DIR)) if _NAME.fullmatch(e.name)]
    except FileNotFoundError:
        return []
    folder = root.path(QUEUE_DIR)
    return [folder / name for name in sorted(found)]


def read_pending(root: Sysroot, limit: int = 1000, now: float | None = None) -> Pending:
    """Up to LIMIT events from the head of the queue. It stops at a file still being written, so an event is
    never applied before one queued earlier."""
    pending = Pending()
    clock = time.time() if now is None else now
    for path in queued_files(root)[:limit]:
        try:
            data, mtime = _read_small(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            pending.files.append(path)
            pending.warnings.append(f"{path}: unreadable ({e.strerror}); event dropped")
            continue
        if not data.endswith(b"\n") and len(data) <= _MAX_BYTES:
            if clock - mtime < STALE_SECONDS:
                break
            pending.files.append(path)
            pending.warnings.append(f"{path}: left incomplete by its writer; event dropped")
            continue
        pending.files.append(path)
        try:
            if len(data) > _MAX_BYTES:
                raise InputError(f"longer than {_MAX_BYTES} bytes")
            pending.events.append(parse_line(data[:-1].decode("ascii"), int(mtime)))
        except (InputError, UnicodeDecodeError) as e:
            why = "not ASCII" if isinstance(e, UnicodeDecodeError) else str(e)
            pending.warnings.append(f"{path}: {why}; event dropped")
    return pending


def _read_small(path: Path) -> tuple[bytes, float]:
    """At most _MAX_BYTES + 1 bytes of PATH and its mtime; never follows a link, never blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        return os.read(fd, _MAX_BYTES + 1), st.st_mtime
    finally:
        os.close(fd)


def acknowledge(files: list[Path]) -> None:
    """Remove applied events from the queue (after their changes are on disk)."""
    for path in files:
        path.unlink(missing_ok=True)


def enqueue(root: Sysroot, event: LeaseEvent) -> Path:
    """Queue EVENT as the hook does (tests, benchmarks): the next sequence number, created exclusively."""
    folder = root.path(QUEUE_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    files = queued_files(root)
    seq = int(files[-1].name[:12]) if files else 0
    line = f"{event.action} {event.mac} {event.ip}\n".encode()
    while True:
        seq += 1
        try:
            fd = os.open(folder / f"{seq:012d}.ev", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return folder / f"{seq:012d}.ev"
