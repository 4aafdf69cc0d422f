"""What is known about a node, gathered for `kestrel-nodes list` and `show`: registry, state, boot stage."""

from __future__ import annotations

import time
from typing import Any

from kestrel.config import Config
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.nodes.registry import Node
from kestrel.status import report
from kestrel.sysroot import Sysroot

MIB = 1024 * 1024


def node_row(node: Node, states: nodestate.States) -> dict[str, Any]:
    """NODE's registry entry and its last known state and facts, in the JSON vocabulary (kestrel.vocabulary)."""
    s = states.get(node.mac, nodestate.NodeState())
    return {
        "name": node.name,
        "mac": node.mac,
        "ip": str(node.ip),
        "image": node.image,
        "group": node.group,
        "state": str(s.state),
        "cpus": s.cpus,
        "memory_bytes": None if s.memory_mb is None else s.memory_mb * MIB,
        "last_seen": report.iso(s.last_seen),
    }


def show_node(root: Sysroot, config: Config, name: str) -> dict[str, Any]:
    """Everything known about node NAME: its list row, the root it booted, and its status row (boot stage and
    since when, booted and current image versions, drift, uptime, load). Reads files only: no SSH."""
    node = registry.find_node(registry.load_registry(root), name)
    states = nodestate.load_states(root)
    facts = node_row(node, states) | {"root": states.get(node.mac, nodestate.NodeState()).root}
    status = next((r.as_json() for r in report.status(root, config, now=time.time()) if r.name == name), {})
    return facts | {k: v for k, v in status.items() if k not in facts or facts[k] is None}


def memory_text(row: dict[str, Any]) -> str:
    """memory_bytes as people read it: 3.9 GiB."""
    size = row.get("memory_bytes")
    return "-" if size is None else f"{size / 1024**3:.1f} GiB"


def value_text(value: Any) -> str:
    """A value of `show` as text: '-' for unknown, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)
