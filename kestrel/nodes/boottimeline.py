"""Where a network boot's time goes (pure): marks on the serial console, stamped as they appeared, and the node's
own `systemd-analyze` once it is up.

The phases, each from the end of the previous one: firmware and iPXE's DHCP (power-on to iPXE's `Filename:`),
the boot script, kernel and initrd over HTTP (to `initrd.img... ok`), the kernel up to the initramfs's DHCP
answer (`IP-Config: DEV complete`, with the tries that got no answer), the rest of the initramfs (NFS root and
overlay, up to the switch to the real root: the kernel part of `systemd-analyze`), systemd up to sshd (the
`@` time of ssh.service in `systemd-analyze critical-chain`), and sshd to the first SSH session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Console text -> mark name; the first appearance of each counts.
CONSOLE_MARKS = (
    ("ipxe", re.compile(r"iPXE initialising devices")),
    ("ipxe-dhcp", re.compile(r"Filename: ")),
    ("initrd", re.compile(r"initrd\.img\.\.\. ok")),
    ("initramfs-dhcp-start", re.compile(r"IP-Config: \S+ hardware address")),
    ("initramfs-dhcp", re.compile(r"IP-Config: \S+ complete")),
    ("login", re.compile(r"login: ")),
)
LOST_TRY = re.compile(r"IP-Config: no response after")

# "Startup finished in 14.106s (kernel) + 25.370s (userspace) = 39.476s"; minutes appear as "1min 2.003s"
_FINISHED = re.compile(r"Startup finished in (.+?) \(kernel\)(?: \+ (.+?) \(initrd\))? \+ (.+?) \(userspace\)")
# "ssh.service +95ms" / "└─ssh.service @24.418s +95ms" in critical-chain output
_CHAIN = re.compile(r"ssh\.service @(\S+)")
_SPAN = re.compile(r"(?:(\d+)min\s*)?(?:(\d+(?:\.\d+)?)s)?(?:\s*(\d+)ms)?$")


def seconds(text: str) -> float:
    """systemd's time span ("1min 2.003s", "24.418s", "950ms") in seconds; ValueError if it is none."""
    m = _SPAN.match(text.strip())
    if not m or not any(m.groups()):
        raise ValueError(f"not a systemd time span: {text!r}")
    minutes, secs, ms = m.groups()
    return int(minutes or 0) * 60 + float(secs or 0) + int(ms or 0) / 1000


@dataclass
class ConsoleMarks:
    """Seconds since power-on at which each console mark first appeared, fed chunk by chunk as the console grows."""

    at: dict[str, float] = field(default_factory=dict)
    lost_tries: int = 0
    _text: str = ""

    def feed(self, chunk: str, elapsed: float) -> None:
        self._text += chunk
        for name, pattern in CONSOLE_MARKS:
            if name not in self.at and pattern.search(self._text):
                self.at[name] = elapsed
        self.lost_tries = len(LOST_TRY.findall(self._text))


@dataclass(frozen=True)
class SystemdTimes:
    kernel: float  # kernel start to the switch to the real root (the initramfs included)
    userspace: float
    sshd: float | None  # systemd start to ssh.service active


def parse_systemd(analyze: str, chain: str) -> SystemdTimes | None:
    """`systemd-analyze` and `systemd-analyze critical-chain ssh.service` output, or None if not finished."""
    m = _FINISHED.search(analyze)
    if not m:
        return None
    kernel = seconds(m[1]) + (seconds(m[2]) if m[2] else 0.0)
    found = _CHAIN.search(chain)
    return SystemdTimes(kernel, seconds(m[3]), seconds(found[1]) if found else None)


PHASES = (
    "firmware + iPXE DHCP",
    "boot script, kernel, initrd (HTTP)",
    "kernel to initramfs DHCP",
    "initramfs: NFS root, overlay",
    "systemd to sshd",
    "sshd to SSH session",
)


def timeline(marks: ConsoleMarks, systemd: SystemdTimes | None, ssh_ready: float) -> dict[str, float | None]:
    """Each phase's seconds (None where a mark is missing); their sum is power-on to SSH-ready."""
    at = marks.at
    fetched = at.get("initrd")
    dhcp = at.get("initramfs-dhcp")
    switched = fetched + systemd.kernel if systemd and fetched is not None else None
    sshd = switched + systemd.sshd if switched is not None and systemd and systemd.sshd is not None else None
    ends = [at.get("ipxe-dhcp"), fetched, dhcp, switched, sshd, ssh_ready]
    out: dict[str, float | None] = {}
    previous: float | None = 0.0
    for name, end in zip(PHASES, ends, strict=True):
        out[name] = end - previous if end is not None and previous is not None else None
        previous = end
    return out
