"""What Kestrel learns about nodes (up/down, last seen, CPUs, memory, the image root they booted): one JSON file
keyed by MAC, pure updates."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

STATE_PATH = "/var/lib/kestrel/nodes.json"
# One SSH visit reads every fact as KEY=VALUE lines; fixed text, nothing interpolated. The root is the image root
# the node runs on (a container node's init writes it down; else the NFS root of its kernel command line): the
# image version, which must not be deleted. A container's own cgroup limits (memory, CPU quota: cgroup2 or v1,
# seen through its cgroup namespace) are its real size; a booted node has none and counts its hardware.
FACTS_COMMAND = (
    "echo cpus=$(nproc); echo memory_kb=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo); "
    "echo root=$(cat /run/kestrel-node/root 2>/dev/null || "
    "tr ' ' '\\n' </proc/cmdline | sed -n 's/^nfsroot=[^:]*:\\([^,]*\\).*/\\1/p'); "
    "echo memory_limit=$(cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
    "| head -n1); "
    "echo cpu_limit=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
    "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null))"
)


class State(StrEnum):
    """A node is up from a DHCP lease or an SSH answer, down from a released lease or a failed check."""

    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Facts:
    cpus: int
    memory_mb: int
    root: str | None = None  # the image root it booted (system path on the frontend), None: not an NFS root


@dataclass(frozen=True)
class NodeState:
    state: State = State.UNKNOWN
    last_seen: int | None = None  # seconds since the epoch of the last lease or answer
    cpus: int | None = None
    memory_mb: int | None = None
    root: str | None = None

    @property
    def is_up(self) -> bool:
        return self.state is State.UP


# Keyed by MAC: a renamed node keeps its facts.
States = dict[str, NodeState]


def parse_states(text: str, where: str = STATE_PATH) -> States:
    try:
        data = json.loads(text)
        return {
            mac: NodeState(
                State(v.get("state", "unknown")), v.get("last_seen"), v.get("cpus"), v.get("memory_mb"), v.get("root")
            )
            for mac, v in data["nodes"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{where}: not a Kestrel node state file ({e}); remove it to start afresh") from None


def format_states(states: States) -> bytes:
    data = {
        "version": 1,
        "nodes": {mac: {k: v for k, v in asdict(s).items() if v is not None} for mac, s in sorted(states.items())},
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def load_states(root: Sysroot) -> States:
    data = root.read(STATE_PATH)
    return parse_states(data.decode("utf-8", "replace"), root.sys(STATE_PATH)) if data else {}


def mark(states: States, mac: str, up: bool, now: int, facts: Facts | None = None) -> States:
    """STATES with MAC marked up (seen at NOW) or down; FACTS replace the known ones when given."""
    have = states.get(mac, NodeState())
    new = replace(have, state=State.UP if up else State.DOWN, last_seen=now if up else have.last_seen)
    if facts is not None:
        new = replace(new, cpus=facts.cpus, memory_mb=facts.memory_mb, root=facts.root)
    return {**states, mac: new}


def keep_only(states: States, macs: set[str]) -> States:
    """Forget the facts of removed nodes."""
    return {mac: s for mac, s in states.items() if mac in macs}


def parse_facts(output: str) -> Facts:
    """The KEY=VALUE lines of FACTS_COMMAND (other lines are ignored): cpus=4, memory_kb=16384000, root=PATH,
    memory_limit=BYTES|max, cpu_limit=QUOTA PERIOD (a limit below what the node counts wins)."""
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    try:
        cpus, memory_kb = int(values["cpus"]), int(values["memory_kb"])
    except (KeyError, ValueError):
        raise ValueError(f"unexpected answer to the facts command: {output[:120]!r}") from None
    memory_mb = memory_kb // 1024
    limit = values.get("memory_limit", "").strip()
    if limit.isdigit() and int(limit) // (1024 * 1024) < memory_mb:
        memory_mb = max(1, int(limit) // (1024 * 1024))
    quota = values.get("cpu_limit", "").split()
    if len(quota) == 2 and quota[0].isdigit() and quota[1].isdigit() and int(quota[1]) > 0:
        cpus = max(1, min(cpus, -(-int(quota[0]) // int(quota[1]))))
    root = values.get("root", "").strip()
    return Facts(cpus=cpus, memory_mb=memory_mb, root=root if root.startswith("/") else None)


def macs_by_root(states: States) -> dict[str, list[str]]:
    """The image roots that up nodes run on, each with those nodes' MACs (sorted)."""
    found: dict[str, list[str]] = {}
    for mac, s in sorted(states.items()):
        if s.is_up and s.root:
            found.setdefault(s.root, []).append(mac)
    return found
