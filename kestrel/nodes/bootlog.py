"""Boot events from the frontend's logs, parsed purely: nginx's access log (boot script, kernel, initrd, the
initramfs's root-mounted report) and dnsmasq's log (DHCPACK, TFTP `sent`); the tail of a log file.

Lines that are not boot events (other URLs, failed requests, router advertisements) yield nothing: the logs
belong to the services, and a foreign line must never stop a status.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime
from pathlib import Path

from kestrel import names
from kestrel.nodes.stages import Event, Stage

# What the initramfs fetches once the NFS root is mounted (kernel command line kestrel.mounted=URL).
MOUNTED_PATH = "/status/mounted"

# nginx's default 'combined' format: ADDR - USER [TIME] "METHOD PATH PROTO" STATUS BYTES "REFERER" "AGENT"
_NGINX = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "(?:GET|HEAD) (\S+) [^"]*" (\d{3}) ')
# dnsmasq logging to a file: 'Dec  2 14:53:38 dnsmasq-dhcp[123]: DHCPACK(br0) 10.10.0.5 52:54:00:..:.. [name]'
_DNSMASQ = re.compile(r"^(\w{3} [ \d]\d \d\d:\d\d:\d\d) dnsmasq(?:-\w+)?\[\d+\]: (.*)$")
_ACK = re.compile(r"^DHCPACK\([^)]*\) (\S+) ([0-9a-fA-F:]{17})\b")
_SENT = re.compile(r"^sent (\S+) to (\S+)$")
_BOOT_FILE = re.compile(r"(?:^|/)images/([^/]+)/([^/]+)/(vmlinuz|initrd\.img)$")
# Loaders and menus fetched over TFTP before the kernel (pxelinux, or iPXE chainloaded by a PXE ROM).
_LOADERS = re.compile(
    r"(?:^|/)(?:pxelinux\.0|ldlinux\.\w+|syslinux\.efi|undionly\.kpxe|snponly\.efi|pxelinux\.cfg/\S+)$"
)


def _fetched(path: str) -> tuple[Stage, str | None, str | None] | None:
    """The stage a fetch of PATH marks (with the image and version of a kernel or initrd), or None."""
    if m := _BOOT_FILE.search(path):
        return (Stage.KERNEL if m[3] == "vmlinuz" else Stage.INITRD), m[1], m[2]
    if _LOADERS.search(path):
        return Stage.SCRIPT, None, None
    return None


def parse_access_line(line: str) -> Event | None:
    """One nginx access-log line (combined format) as a boot event, or None."""
    m = _NGINX.match(line)
    if not m or not ("200" <= m[4] < "400"):
        return None
    path = m[3].split("?", 1)[0]
    if path == "/boot.ipxe" or (path.startswith("/boot/") and path.endswith(".ipxe")):
        found: tuple[Stage, str | None, str | None] | None = (Stage.SCRIPT, None, None)
    elif path == MOUNTED_PATH:
        found = (Stage.ROOT, None, None)
    else:
        found = _fetched(path)
    if found is None:
        return None
    at = _access_time(m[2])
    if at is None:
        return None
    stage, image, version = found
    return Event(at, stage, ip=m[1], image=image, version=version, source="http")


def parse_dnsmasq_line(line: str, now: float) -> Event | None:
    """One line of dnsmasq's log file as a boot event (DHCPACK: a lease; TFTP sent: a boot fetch), or None.

    dnsmasq writes local time without a year: the year is NOW's, or the one before for a date after NOW.
    """
    m = _DNSMASQ.match(line)
    if not m:
        return None
    text = m[2]
    mac = image = version = None
    if ack := _ACK.match(text):
        stage, ip, source = Stage.LEASE, ack[1], "dhcp"
        try:
            mac = names.normalize_mac(ack[2])
        except ValueError:
            return None
    elif sent := _SENT.match(text):
        fetched = _fetched(sent[1])
        if fetched is None:
            return None
        (stage, image, version), ip, source = fetched, sent[2], "tftp"
    else:
        return None
    at = _syslog_time(m[1], now)
    if at is None:
        return None
    return Event(at, stage, mac=mac, ip=ip, image=image, version=version, source=source)


@functools.lru_cache(maxsize=4096)  # a boot's fetches share their second: parse each stamp once
def _access_time(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _syslog_time(text: str, now: float) -> float | None:
    year = time.localtime(now).tm_year
    for y in (year, year - 1):
        try:
            at = time.mktime(time.strptime(f"{y} {text}", "%Y %b %d %H:%M:%S"))
        except ValueError:
            return None
        if at <= now + 86400:
            return at
    return None


def parse_access_log(text: str) -> list[Event]:
    return [e for line in text.splitlines() if (e := parse_access_line(line))]


def parse_dnsmasq_log(text: str, now: float) -> list[Event]:
    return [e for line in text.splitlines() if (e := parse_dnsmasq_line(line, now))]


def read_tail(path: Path, limit: int = 4 << 20) -> str:
    """The last LIMIT bytes of PATH from the first whole line ('' if it does not exist): recent boots only."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            data = f.read()
    except FileNotFoundError:
        return ""
    if size > limit:
        data = data[data.find(b"\n") + 1 :]
    return data.decode(errors="replace")
