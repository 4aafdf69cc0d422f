"""The grammar of every string that reaches a generated file, a path or a command: MACs, host and node names,
labels, absolute paths, kernel command lines, URLs, free text.

check_* raise ValueError (pydantic turns it into a located config error); parse_* raise InputError, for values
from the command line and from Kestrel's own files. A new config key that is a string gets one of the
annotated types of config.py built on these (or a new check_* here), never a bare str."""

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
# Paths reach dnsmasq's config, exports, ganesha blocks, /etc/passwd (':' separates fields) and argv:
# no whitespace, quotes, ':', ',', '#', '$' or control characters in any of them.
_PATH = re.compile(r"/[A-Za-z0-9_./+@-]{0,4095}")
# A lease time as dnsmasq reads it (the last field of a dhcp-host line): 3600, 45m, 12h, 2d, 1w.
_LEASE_TIME = re.compile(r"[0-9]+[smhdw]?")
# dnsmasq reads these in a dhcp-host line as keywords, not names; localhost is the loopback's.
_RESERVED_NODE_NAMES = frozenset({"ignore", "infinite", "localhost", "deleted"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def normalize_mac(text: str) -> str:
    """'52-54-00-AA-BB-01' or '5254.00aa.bb01' -> '52:54:00:aa:bb:01'; ValueError if not a MAC."""
    low = text.lower() if isinstance(text, str) else ""  # no strip: a newline in a MAC is bad input
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


def check_node_name(text: str, what: str = "node name") -> str:
    """A node or group name: an RFC 1123 label that dnsmasq cannot read as a keyword, a lease time or an
    address (all digits), and not localhost."""
    if not is_hostname(text):
        raise ValueError(f"{text!r} is not a valid {what} (RFC 1123: a-z, 0-9, inner '-', at most 63)")
    if _LEASE_TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid {what}: dnsmasq reads it as a lease time or address")
    if text in _RESERVED_NODE_NAMES:
        raise ValueError(f"{text!r} is not a valid {what}: it is reserved (dnsmasq keyword or localhost)")
    return text


def check_group_name(text: str) -> str:
    return check_node_name(text, "group name")


def check_abs_path(text: str) -> str:
    """An absolute, normalised path of plain characters (a-z A-Z 0-9 _ . / + @ -), no '.' or '..' parts."""
    if not isinstance(text, str) or not _PATH.fullmatch(text):
        raise ValueError(f"{text!r} is not an absolute path of plain characters (a-z A-Z 0-9 _ . / + @ -)")
    parts = text.split("/")[1:]
    if any(p in (".", "..") for p in parts) or "//" in text or (len(text) > 1 and text.endswith("/")):
        raise ValueError(f"{text!r} is not a normalised absolute path (no '.', '..', '//' or trailing '/')")
    if any(len(p) > 255 for p in parts):
        raise ValueError(f"{text!r}: a path component is longer than 255 characters")
    return text


def check_relative_path(text: str) -> str:
    """A relative path below a folder (a kernel under the http root): plain characters, no '..'."""
    if not isinstance(text, str) or text.startswith("/"):
        raise ValueError(f"{text!r} is not a relative path")
    check_abs_path("/" + text)
    return text


def check_cmdline(text: str) -> str:
    """Kernel command line tokens: printable, no newline, quote, '#', '`', '$', ';', '\\' or '{'."""
    if not isinstance(text, str) or _CONTROL.search(text) or any(c in text for c in "\"'`$;#\\{}"):
        raise ValueError(
            f"{text!r}: a kernel command line cannot hold control characters, quotes, '#', '`', '$', ';', "
            "'\\' or braces"
        )
    if len(text) > 2048:
        raise ValueError("a kernel command line is at most 2048 characters")
    return text


def check_url(text: str) -> str:
    """A mirror URL (http://, https:// or file:///) without whitespace, quotes, '#' or control characters."""
    if (
        not isinstance(text, str)
        or not text.startswith(("http://", "https://", "file:///"))
        or _CONTROL.search(text)
        or any(c.isspace() or c in "\"'`#\\<>" for c in text)
        or len(text) > 2048
    ):
        raise ValueError(f"{text!r} is not a mirror URL (http://, https:// or file:///, no spaces, quotes or '#')")
    return text.rstrip("/")


def check_text(text: str) -> str:
    """Free text on one line (a description): no control characters, at most 200 characters."""
    if not isinstance(text, str) or _CONTROL.search(text) or len(text) > 200:
        raise ValueError(f"{text!r} is not one line of text (no control characters, at most 200)")
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


def parse_node_name(text: str, what: str = "node name") -> str:
    """A node or group name (check_node_name), as bad input."""
    try:
        return check_node_name(text, what)
    except ValueError as e:
        raise InputError(str(e)) from None


def parse_label(text: str, what: str) -> str:
    """An image, group or module name (check_name), as bad input."""
    try:
        return check_name(text, what)
    except ValueError as e:
        raise InputError(str(e)) from None
