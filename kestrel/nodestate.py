"""What Kestrel learns about nodes (up/down, last seen, CPUs, memory): one JSON file keyed by MAC, pure updates."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

STATE_PATH = "/var/lib/kestrel/nodes.json"
# One SSH visit reads both facts; fixed text, nothing interpolated.
FACTS_COMMAND = "nproc; grep '^MemTotal:' /proc/meminfo"


class State(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Facts:
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class NodeState:
    state: State = State.UNKNOWN
    last_seen: int | None = None  # seconds since the epoch of the last lease or answer
    cpus: int | None = None
    memory_mb: int | None = None

    @property
    def is_up(self) -> bool:
        return self.state is State.UP


# Keyed by MAC: a renamed node keeps its facts.
States = dict[str, NodeState]


def parse_states(text: str, where: str = STATE_PATH) -> States:
    try:
        data = json.loads(text)
        return {mac: NodeState(State(v.get("state", "unknown")), v.get("last_seen"), v.get("cpus"),
                               v.get("memory_mb"))
                for mac, v in data["nodes"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{where}: not a Kestrel node state file ({e}); remove it to start afresh") from None


def format_states(states: States) -> bytes:
    data = {"version": 1, "nodes": {mac: {k: v for k, v in asdict(s).items() if v is not None}
                                    for mac, s in sorted(states.items())}}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def load_states(root: Sysroot) -> States:
    data = root.read(STATE_PATH)
    return parse_states(data.decode("utf-8", "replace"), root.sys(STATE_PATH)) if data else {}


def mark(states: States, mac: str, up: bool, now: int, facts: Facts | None = None) -> States:
    """STATES with MAC marked up (seen at NOW) or down; FACTS replace the known ones when given."""
    have = states.get(mac, NodeState())
    new = replace(have, state=State.UP if up else State.DOWN, last_seen=now if up else have.last_seen)
    if facts is not None:
        new = replace(new, cpus=facts.cpus, memory_mb=facts.memory_mb)
    return {**states, mac: new}


def keep_only(states: States, macs: set[str]) -> States:
    """Forget the facts of removed nodes."""
    return {mac: s for mac, s in states.items() if mac in macs}


def parse_facts(output: str) -> Facts:
    """The output of FACTS_COMMAND: `4` then `MemTotal:  16384000 kB`."""
    match = re.fullmatch(r"\s*(\d+)\s*\nMemTotal:\s+(\d+) kB\s*", output)
    if not match:
        raise ValueError(f"unexpected answer to {FACTS_COMMAND!r}: {output[:80]!r}")
    return Facts(cpus=int(match[1]), memory_mb=int(match[2]) // 1024)
