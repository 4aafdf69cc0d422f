"""Where a network boot's time goes (pure): marks on the serial console, stamped as they appeared, and the node's
own systemd timestamps (what systemd-analyze shows) once it is up.

The phases, each from the end of the previous one: firmware and iPXE's DHCP (power-on to iPXE's `Filename:`),
the boot script, kernel and initrd over HTTP (to `initrd.img... ok`), the kernel up to the initramfs's DHCP
answer (`IP-Config: DEV complete`, with the tries that got no answer), the rest of the initramfs (NFS root and
overlay, up to the switch to the real root: systemd's UserspaceTimestamp), systemd up to sshd (ssh.service's
ActiveEnterTimestamp), and sshd to the first SSH session. The node's clock starts with its kernel, after the
kernel has unpacked itself: its uptime, read at a known moment, places its timestamps on the power-on clock.
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

# Run on the node once it answers SSH: its uptime, and systemd's own timestamps (microseconds since the kernel
# started, the data systemd-analyze shows) of the switch to the real root and of sshd becoming active.
NODE_COMMAND = (
    "cat /proc/uptime; systemctl show -p UserspaceTimestampMonotonic; "
    "systemctl show -p ActiveEnterTimestampMonotonic ssh.service"
)


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
class NodeTimes:
    """Seconds since the node's kernel started: now (its uptime), the switch to the real root, sshd active."""

    uptime: float
    userspace: float
    sshd: float | None


def parse_node(output: str) -> NodeTimes | None:
    """NODE_COMMAND's output, or None if it is not whole (the root not switched yet)."""
    lines = output.split("\n")
    try:
        uptime = float(lines[0].split()[0])
        values = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        userspace = int(values["UserspaceTimestampMonotonic"]) / 1e6
        sshd = int(values.get("ActiveEnterTimestampMonotonic", "0")) / 1e6
    except (IndexError, KeyError, ValueError):
        return None
    return NodeTimes(uptime, userspace, sshd or None) if userspace else None


PHASES = (
    "firmware + iPXE DHCP",
    "boot script, kernel, initrd (HTTP)",
    "kernel to initramfs DHCP",
    "initramfs: NFS root, overlay",
    "systemd to sshd",
    "sshd to SSH session",
)


def timeline(
    marks: ConsoleMarks, node: NodeTimes | None, ssh_ready: float, read_at: float | None = None
) -> dict[str, float | None]:
    """Each phase's seconds (None where a mark is missing); their sum is power-on to SSH-ready. READ_AT is when
    NODE was read, in seconds since power-on: the kernel started READ_AT - uptime after power-on."""
    at = marks.at
    kernel = read_at - node.uptime if node and read_at is not None else None
    switched = kernel + node.userspace if node and kernel is not None else None
    sshd = kernel + node.sshd if node and kernel is not None and node.sshd is not None else None
    ends = [at.get("ipxe-dhcp"), at.get("initrd"), at.get("initramfs-dhcp"), switched, sshd, ssh_ready]
    out: dict[str, float | None] = {}
    previous: float | None = 0.0
    for name, end in zip(PHASES, ends, strict=True):
        out[name] = end - previous if end is not None and previous is not None else None
        previous = end
    return out
