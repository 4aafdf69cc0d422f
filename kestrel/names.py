"""Validation of the names and addresses that reach files, paths and commands: MACs, hostnames, labels.

check_* raise ValueError (pydantic turns it into a located config error); parse_* raise InputError, for values
from the command line and from Kestrel's own files."""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address

from kestrel.errors import InputError

_MAC_SEP = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
_MAC_DOT = re.compile(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Image, group and module names become file names, dnsmasq tags and path parts: keep them plain.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def normalize_mac(text: str) -> str:
    """'52-54-00-AA-BB-01' or '5254.00aa.bb01' -> '52:54:00:aa:bb:01'; ValueError if not a MAC."""
    low = text.strip().lower() if isinstance(text, str) else ""
    if _MAC_SEP.fullmatch(low):
        digits = low.replace(":", "").replace("-", "")
    elif _MAC_DOT.fullmatch(low):
        digits = low.replace(".", "")
    else:
        raise ValueError(f"{text!r} is not a MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def is_hostname(text: str) -> bool:
    """An RFC 1123 host label: letters, digits and inner hyphens, 1 to 63 characters, lowercase."""
    return isinstance(text, str) and _LABEL.fullmatch(text) is not None


def check_hostname(text: str) -> str:
    if not is_hostname(text):
        raise ValueError(f"{text!r} is not a valid host name (RFC 1123: a-z, 0-9, inner '-', at most 63)")
    return text


def check_domain(text: str) -> str:
    parts = text.split(".") if isinstance(text, str) else [""]
    if len(text) > 253 or not all(is_hostname(p) for p in parts):
        raise ValueError(f"{text!r} is not a valid domain name")
    return text


def check_name(text: str, what: str = "name") -> str:
    """Image, group and module names: lowercase letters, digits, '_', '.', '-'; no path tricks."""
    if not isinstance(text, str) or not _NAME.fullmatch(text) or ".." in text:
        raise ValueError(f"{text!r} is not a valid {what} (a-z, 0-9, '_', '.', '-', at most 63)")
    return text


def check_ifname(text: str) -> str:
    if not isinstance(text, str) or not _IFNAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a network interface name (at most 15 of A-Z a-z 0-9 _ . -)")
    return text


def parse_mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError as e:
        raise InputError(str(e)) from None


def parse_ip(value: str | IPv4Address) -> IPv4Address:
    try:
        return IPv4Address(value)
    except (AddressValueError, ValueError):
        raise InputError(f"{value!r} is not an IPv4 address") from None


def parse_label(text: str, what: str) -> str:
    """An image, group or module name (check_name), as bad input."""
    try:
        return check_name(text, what)
    except ValueError as e:
        raise InputError(str(e)) from None
