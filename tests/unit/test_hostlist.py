"""Host lists and @group, as clush reads them: one resolver for every command that names nodes."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from kestrel.errors import InputError
from kestrel.nodes import hostlist
from kestrel.nodes.registry import Node, select_nodes

GROUPS = {"gpu": ["node05", "node06"], "compute": ["node01", "node02", "node03", "node04"]}


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("node01", ["node01"]),
        ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
        ("node[8-11]", ["node8", "node9", "node10", "node11"]),
        ("login,node[1-2]", ["login", "node1", "node2"]),
        ("@gpu", ["node05", "node06"]),
        ("@gpu,login", ["login", "node05", "node06"]),
        ("@compute!node[02-03]", ["node01", "node04"]),
        ("@*", ["node01", "node02", "node03", "node04", "node05", "node06"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ],
)
def test_expand(text: str, names: list[str]) -> None:
    assert hostlist.expand(text, GROUPS) == names


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("node[01-03", "'node[01-03' is not a host list (missing bracket: \"node[01-03\")"),
        ("node[3-1]", '\'node[3-1]\' is not a host list (bad range: "invalid values in range : "3-1"")'),
        ("@io", "no node is in group 'io'"),
        ("@Bad!", "'Bad' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)"),
    ],
)
def test_bad_host_lists_are_one_line(text: str, error: str) -> None:
    with pytest.raises(InputError) as e:
        hostlist.expand(text, GROUPS)
    assert str(e.value) == error


def test_fold_is_the_inverse() -> None:
    names = ["node01", "node02", "node03", "node07", "login"]
    assert hostlist.fold(names) == "login,node[01-03,07]"
    assert sorted(hostlist.expand(hostlist.fold(names))) == sorted(names)


def _nodes() -> list[Node]:
    return [
        Node(f"node{i:02d}", f"52:54:00:00:00:{i:02x}", IPv4Address(f"10.10.0.{i + 1}"), "default", group)
        for group, members in GROUPS.items()
        for i in (int(m[4:]) for m in members)
    ]


def test_select_nodes_in_the_order_named_each_once() -> None:
    nodes = _nodes()
    assert [n.name for n in select_nodes(nodes, ["node03", "node[01-03]", "@gpu"])] == [
        "node03",
        "node01",
        "node02",
        "node05",
        "node06",
    ]
    assert [n.name for n in select_nodes(nodes, [], "gpu")] == ["node05", "node06"]
    assert select_nodes(nodes, []) == nodes


@pytest.mark.parametrize(
    ("words", "group", "error"),
    [
        (["node[01-02,09-10]"], None, "no node named 'node09', 'node10' (see kestrel-nodes list)"),
        (["a;rm -rf /"], None, "no node named 'a;rm -rf /' (see kestrel-nodes list)"),
        ([], "io", "no node is in group 'io'"),
        (["node01"], "gpu", "give node names or --group, not both"),
        ([], "Bad!", "'Bad!' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)"),
    ],
)
def test_select_nodes_refuses(words: list[str], group: str | None, error: str) -> None:
    with pytest.raises(InputError) as e:
        select_nodes(_nodes(), words, group)
    assert str(e.value) == error
