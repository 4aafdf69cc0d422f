"""MPI and Slurm hostfiles from the registry and node state (OpenMPI, MPICH, Slurm, hosts), rendered purely."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address

from kestrel.config import Config
from kestrel.nodes import hostlist
from kestrel.nodes.registry import Node, natural_key
from kestrel.nodes.state import States
from kestrel.plan import Desired
from kestrel.sysroot import Sysroot
from kestrel.templates import render

HOSTFILES_DIR = "/etc/kestrel/hostfiles"
_TRAILING_DIGITS = re.compile(r"(.*?)(\d+)")


class Format(StrEnum):
    OPENMPI = "openmpi"
    MPICH = "mpich"
    SLURM = "slurm"
    HOSTS = "hosts"


@dataclass(frozen=True)
class Entry:
    name: str
    ip: IPv4Address
    group: str
    cpus: int  # 1 until a visit has counted them
    memory_mb: int | None


def select(nodes: Iterable[Node], states: States, group: str | None = None, everything: bool = False) -> list[Entry]:
    """The nodes a hostfile lists: those that are up (all of them with EVERYTHING), of GROUP if given."""
    out = []
    for node in sorted(nodes, key=natural_key):
        state = states.get(node.mac)
        if group is not None and node.group != group:
            continue
        if not everything and not (state and state.is_up):
            continue
        out.append(
            Entry(
                node.name, node.ip, node.group, (state.cpus if state else None) or 1, state.memory_mb if state else None
            )
        )
    return out


def render_hostfile(root: Sysroot, config: Config, fmt: Format, entries: list[Entry]) -> str:
    """One hostfile; the templates hostfile-FORMAT can be overridden like every other."""
    context: dict[str, object] = {"config": config, "entries": entries}
    if fmt is Format.SLURM:
        context |= slurm_context(entries, config.nodes.default_group)
    return render(root, f"hostfile-{fmt}", **context)


def slurm_context(entries: list[Entry], default_group: str) -> dict[str, object]:
    """NodeName lines (one per kind of hardware) and a partition per group, host ranges folded."""
    kinds: dict[tuple[int, int | None], list[str]] = {}
    groups: dict[str, list[str]] = {}
    for e in entries:
        kinds.setdefault((e.cpus, e.memory_mb), []).append(e.name)
        groups.setdefault(e.group, []).append(e.name)
    node_lines = [
        {"hosts": fold_hostlist(hosts), "cpus": cpus, "memory_mb": memory} for (cpus, memory), hosts in kinds.items()
    ]
    partitions = [
        {"group": group, "hosts": fold_hostlist(hosts), "default": group == default_group}
        for group, hosts in sorted(groups.items())
    ]
    if partitions and not any(p["default"] for p in partitions):
        partitions[0]["default"] = True
    return {"node_lines": node_lines, "partitions": partitions}


def desired_hostfiles(root: Sysroot, config: Config, nodes: list[Node], states: States) -> list[Desired]:
    """The files under ROOT/etc/kestrel/hostfiles (exported read-only to the nodes): nodes that are up."""
    entries = select(nodes, states)
    return [Desired(f"{HOSTFILES_DIR}/{fmt}", render_hostfile(root, config, fmt, entries).encode()) for fmt in Format]


# -- host ranges as Slurm writes them: node[01-04,07],login ---------------------------------------------------


def fold_hostlist(names: Iterable[str]) -> str:
    """node01,node02,node03,node07 -> node[01-03,07]. Only numbers of the same width share brackets."""
    runs: dict[tuple[str, int], list[int]] = {}
    order: list[tuple[str, int] | str] = []
    for name in dict.fromkeys(names):
        match = _TRAILING_DIGITS.fullmatch(name)
        if not match:
            order.append(name)
            continue
        key = (match[1], len(match[2]))
        if key not in runs:
            runs[key] = []
            order.append(key)
        runs[key].append(int(match[2]))
    out = []
    for item in order:
        if isinstance(item, str):
            out.append(item)
            continue
        prefix, width = item
        numbers = sorted(runs[item])
        if len(numbers) == 1:
            out.append(f"{prefix}{numbers[0]:0{width}d}")
            continue
        spans = ",".join(f"{a:0{width}d}" if a == b else f"{a:0{width}d}-{b:0{width}d}" for a, b in _spans(numbers))
        out.append(f"{prefix}[{spans}]")
    return ",".join(out)


def _spans(numbers: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    return spans


def expand_hostlist(text: str) -> list[str]:
    """The inverse of fold_hostlist: node[01-03],login -> node01,node02,node03,login."""
    return hostlist.expand(text)
