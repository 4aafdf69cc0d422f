"""Node sets as clush, pdsh and Slurm write them: node[01-04,07], @gpu, @gpu!node03 (ClusterShell's NodeSet)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupSource

from kestrel import names
from kestrel.errors import InputError

# A word without these is one plain name: passed on as it is, so a bad one is named by whoever looks it up.
_SYNTAX = re.compile(r"[\[\],@!&^]")
_GROUP = re.compile(r"@([^,!&^@\[\]]*)")


def expand(text: str, groups: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """The names TEXT stands for, in NodeSet's order; @GROUP is GROUPS[GROUP] (@* every group). Bad syntax or
    an unknown group is an InputError."""
    if not _SYNTAX.search(text):
        return [text] if text else []
    groups = {g: list(members) for g, members in (groups or {}).items()}
    for group in _GROUP.findall(text):
        if group != "*":
            names.parse_node_name(group, "group name")
            if not groups.get(group):
                raise InputError(f"no node is in group {group!r}")
    source = GroupSource("kestrel", {g: ",".join(members) for g, members in groups.items() if members})
    try:
        return list(NodeSet(text, resolver=GroupResolver(source)))
    except NodeSetException as e:
        raise InputError(f"{text!r} is not a host list ({e})") from None


def fold(node_names: Iterable[str]) -> str:
    """node01,node02,node03,node07 -> node[01-03,07] (ClusterShell's folding, sorted)."""
    return str(NodeSet.fromlist(list(node_names)))
