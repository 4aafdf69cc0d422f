"""Which nodes the gateway spreads traffic over: the registered nodes of its group that are not down (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from kestrel.config import Config
from kestrel.nodes.registry import Node, natural_key
from kestrel.nodes.state import State, States

MODULE = "gateway"


@dataclass(frozen=True)
class Backend:
    name: str  # the node's registered name (a host label: safe in any config)
    ip: IPv4Address
    port: int


def is_enabled(config: Config) -> bool:
    return MODULE in config.modules


def group_of(config: Config) -> str:
    return config.gateway.group or config.nodes.default_group


def select_backends(config: Config, nodes: list[Node], states: States) -> list[Backend]:
    """The group's nodes in name order, but those known to be down (a node added by hand, not seen yet, counts:
    the engine's own health checks find out whether it serves)."""
    group = group_of(config)
    down = {mac for mac, s in states.items() if s.state is State.DOWN}
    chosen = sorted((n for n in nodes if n.group == group and n.mac not in down), key=natural_key)
    return [Backend(n.name, n.ip, config.gateway.backend_port) for n in chosen]
