"""Registry: hostsfile round trip, pure add/remove/set/register, name and address allocation, exact errors."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kestrel.config import Config, Network, Nodes
from kestrel.errors import InputError
from kestrel.nodes.leases import Lease
from kestrel.nodes.registry import (
    Node,
    add_node,
    check_unique,
    format_registry,
    parse_registry,
    register_leases,
    remove_nodes,
    set_node,
    set_nodes,
)

CONFIG = Config()  # 10.10.0.1/24, dynamic range .100-.199, node{index:02d}
POOLED = Config(network=Network(static_pool=(IPv4Address("10.10.0.10"), IPv4Address("10.10.0.12"))))


def node(name: str, last: int, ip: str, image: str = "default", group: str = "compute") -> Node:
    return Node(name, f"52:54:00:aa:00:{last:02x}", IPv4Address(ip), image, group)


def lease(last: int, ip: str) -> Lease:
    return Lease(0, f"52:54:00:bb:00:{last:02x}", IPv4Address(ip), None, None)


# -- the file ---------------------------------------------------------------------------------------------


def test_fixture_registry_parses() -> None:
    text = (
        "# comment\n\n52:54:00:AA:00:01,set:img-default,set:grp-compute,10.10.0.11,node01\n"
        "52:54:00:aa:00:02,set:grp-gpu,set:img-mpi,10.10.0.12,node02\n"
    )
    assert parse_registry(text) == [node("node01", 1, "10.10.0.11"), node("node02", 2, "10.10.0.12", "mpi", "gpu")]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (
            "52:54:00:aa:00:01,10.10.0.11,node01",
            "expected MAC,set:img-IMAGE,set:grp-GROUP,IP,NAME, got '52:54:00:aa:00:01,10.10.0.11,node01'",
        ),
        (
            "52:54:00:aa:00:01,set:img-default,set:grp-compute,10.10.0.311,node01",
            "'10.10.0.311' is not an IPv4 address",
        ),
        (
            "52:54:00:aa:00:01,set:img-default,set:grp-compute,10.10.0.11,a;rm -rf /",
            "'a;rm -rf /' is not a valid node name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
    ],
)
def test_bad_registry_line_names_file_and_line(line: str, why: str) -> None:
    with pytest.raises(InputError) as e:
        parse_registry(f"# header\n{line}\n", "/etc/kestrel/nodes")
    assert str(e.value) == f"/etc/kestrel/nodes:2: {why}"


def test_duplicates_in_a_hand_edited_registry_are_refused() -> None:
    with pytest.raises(InputError) as e:
        check_unique([node("node01", 1, "10.10.0.11"), node("node02", 2, "10.10.0.11")], "/etc/kestrel/nodes")
    assert str(e.value) == (
        "/etc/kestrel/nodes: address 10.10.0.11 appears twice (node01 and node02); fix the file by hand"
    )


names = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s not in ("ignore", "infinite", "localhost", "deleted")
)
labels = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True).filter(lambda s: ".." not in s)


@st.composite
def registries(draw: st.DrawFn) -> list[Node]:
    count = draw(st.integers(0, 12))
    chosen = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    macs = draw(st.lists(st.binary(min_size=6, max_size=6), min_size=count, max_size=count, unique=True))
    ips = draw(st.lists(st.integers(1, 2**24 - 2), min_size=count, max_size=count, unique=True))
    return [
        Node(n, ":".join(f"{b:02x}" for b in m), IPv4Address((10 << 24) + i), draw(labels), draw(names))
        for n, m, i in zip(chosen, macs, ips, strict=True)
    ]


@given(registries())
@settings(suppress_health_check=[HealthCheck.too_slow])  # a shared, loaded machine draws slowly
def test_hostsfile_round_trip(nodes: list[Node]) -> None:
    text = format_registry(nodes)
    assert sorted(parse_registry(text)) == sorted(nodes)
    assert format_registry(parse_registry(text)) == text


# -- changes ----------------------------------------------------------------------------------------------


def test_add_allocates_the_first_free_index_and_address() -> None:
    nodes = [node("node01", 1, "10.10.0.2"), node("node03", 3, "10.10.0.4")]
    new = add_node(nodes, CONFIG, mac="52-54-00-BB-00-09")
    assert new[:2] == nodes
    assert new[2] == Node("node02", "52:54:00:bb:00:09", IPv4Address("10.10.0.3"), "default", "compute")


def test_add_takes_addresses_from_the_static_pool() -> None:
    nodes = add_node([], POOLED, mac="52:54:00:bb:00:01", name="login", image="mpi", group="gpu")
    assert nodes == [Node("login", "52:54:00:bb:00:01", IPv4Address("10.10.0.10"), "mpi", "gpu")]


NEW = "52:54:00:bb:00:01"
HOST = "is not a valid node name (RFC 1123: a-z, 0-9, inner '-', at most 63)"
LABEL = "(a-z, 0-9, '_', '.', '-', at most 63)"
OUTSIDE = "is not a host address of the cluster network 10.10.0.0/24"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mac": "52:54:00:aa:00:01"}, "MAC 52:54:00:aa:00:01 is registered already, as node01"),
        ({"mac": "zz"}, "'zz' is not a MAC address"),
        ({"mac": NEW, "name": "node01"}, "name 'node01' is taken, by 52:54:00:aa:00:01"),
        ({"mac": NEW, "name": "Node02"}, f"'Node02' {HOST}"),
        ({"mac": NEW, "name": "a;rm -rf /"}, f"'a;rm -rf /' {HOST}"),
        ({"mac": NEW, "name": "frontend"}, "name 'frontend' is the frontend's name (cluster.frontend_name)"),
        ({"mac": NEW, "ip": "10.10.0.2"}, "10.10.0.2 is taken, by node01"),
        ({"mac": NEW, "ip": "10.10.0.1"}, "10.10.0.1 is the frontend's address"),
        ({"mac": NEW, "ip": "10.10.1.5"}, f"10.10.1.5 {OUTSIDE}"),
        ({"mac": NEW, "ip": "10.10.0.255"}, f"10.10.0.255 {OUTSIDE}"),
        (
            {"mac": NEW, "ip": "10.10.0.150"},
            "10.10.0.150 is inside the dynamic range 10.10.0.100-10.10.0.199, which only leased addresses may keep; "
            "pick one outside it",
        ),
        ({"mac": NEW, "ip": "1;reboot"}, "'1;reboot' is not an IPv4 address"),
        ({"mac": NEW, "image": "../etc"}, f"'../etc' is not a valid image name {LABEL}"),
        (
            {"mac": NEW, "group": "a;rm -rf /"},
            "'a;rm -rf /' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
    ],
)
def test_add_refuses_with_one_exact_line(kwargs: dict[str, str], error: str) -> None:
    with pytest.raises(InputError) as e:
        add_node([node("node01", 1, "10.10.0.2")], CONFIG, **kwargs)
    assert str(e.value) == error


def test_an_exhausted_static_pool_is_an_error() -> None:
    nodes = [node(f"node{i:02d}", i, f"10.10.0.{9 + i}") for i in (1, 2, 3)]
    with pytest.raises(InputError) as e:
        add_node(nodes, POOLED, mac="52:54:00:bb:00:01")
    assert str(e.value) == "no free address left in the static pool 10.10.0.10-10.10.0.12"


def test_remove_and_unknown_name() -> None:
    nodes = [node("node01", 1, "10.10.0.2"), node("node02", 2, "10.10.0.3")]
    assert remove_nodes(nodes, ["node01"]) == [nodes[1]]
    assert remove_nodes(nodes, ["node[01-02]"]) == []
    with pytest.raises(InputError) as e:
        remove_nodes(nodes, ["node09"])
    assert str(e.value) == "no node named 'node09' (see kestrel-nodes list)"


def test_set_changes_fields_and_checks_only_new_values() -> None:
    nodes = [node("node01", 1, "10.10.0.150"), node("node02", 2, "10.10.0.3")]
    # node01 keeps its leased address in the dynamic range: unchanged values are not re-checked.
    changed = set_node(nodes, CONFIG, "node01", image="mpi", group="gpu", ip="10.10.0.150", new_name="login")
    assert changed == [nodes[1], Node("login", nodes[0].mac, IPv4Address("10.10.0.150"), "mpi", "gpu")]
    with pytest.raises(InputError, match=r"^10.10.0.3 is taken, by node02$"):
        set_node(nodes, CONFIG, "node01", ip="10.10.0.3")
    with pytest.raises(InputError, match=r"^name 'node02' is taken, by 52:54:00:aa:00:02$"):
        set_node(nodes, CONFIG, "node01", new_name="node02")


def test_set_of_several_nodes_by_host_list_or_group() -> None:
    nodes = [node("node01", 1, "10.10.0.2"), node("node02", 2, "10.10.0.3"), node("node03", 3, "10.10.0.4")]
    changed = set_nodes(nodes, CONFIG, ["node[01-02]"], image="mpi")
    assert {n.name: n.image for n in changed} == {"node01": "mpi", "node02": "mpi", "node03": "default"}
    regrouped = set_nodes(changed, CONFIG, ["@compute"], group="gpu")
    assert {n.group for n in regrouped} == {"gpu"}
    with pytest.raises(InputError, match=r"^--ip and --name change one node: name one, not 2$"):
        set_nodes(nodes, CONFIG, ["node01", "node03"], ip="10.10.0.9")
    with pytest.raises(InputError, match=r"^no node named 'node09'"):
        set_nodes(nodes, CONFIG, ["node0[1,9]"], image="mpi")


def test_register_keeps_leased_addresses_and_is_idempotent() -> None:
    nodes = [node("node01", 1, "10.10.0.2")]
    found = [lease(1, "10.10.0.150"), lease(2, "10.10.0.151")]
    after, added, warnings = register_leases(nodes, CONFIG, found, group="gpu")
    assert warnings == []
    assert [(n.name, str(n.ip), n.group) for n in added] == [
        ("node02", "10.10.0.150", "gpu"),
        ("node03", "10.10.0.151", "gpu"),
    ]
    again, added_again, _ = register_leases(after, CONFIG, found)
    assert (again, added_again) == (after, [])


def test_register_with_a_static_pool_moves_nodes_into_it() -> None:
    _, added, _ = register_leases([], POOLED, [lease(1, "10.10.0.150"), lease(2, "10.10.0.151")])
    assert [str(n.ip) for n in added] == ["10.10.0.10", "10.10.0.11"]


def test_register_skips_bad_leases_with_a_warning() -> None:
    nodes = [node("node01", 1, "10.10.0.150")]
    _, added, warnings = register_leases(
        nodes, CONFIG, [lease(1, "10.10.0.150"), lease(2, "192.168.1.5"), lease(3, "10.10.0.152")]
    )
    assert [n.name for n in added] == ["node02"]
    assert warnings == [
        "lease of 52:54:00:bb:00:01 (10.10.0.150): 10.10.0.150 is taken, by node01; not registered",
        "lease of 52:54:00:bb:00:02 (192.168.1.5): 192.168.1.5 is not a host address of the cluster "
        "network 10.10.0.0/24; not registered",
    ]


def test_register_ten_thousand_leases_allocates_linearly() -> None:
    config = Config(
        network=Network.model_validate({"address": "10.0.0.1/16", "dhcp_range": ["10.0.100.0", "10.0.199.255"]}),
        nodes=Nodes(name_pattern="n{index:05d}"),
    )
    found = [
        Lease(
            0,
            f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}",
            IPv4Address(f"10.0.{100 + i // 250}.{1 + i % 250}"),
            None,
            None,
        )
        for i in range(10_000)
    ]
    after, added, warnings = register_leases([], config, found)
    assert len(added) == 10_000 and warnings == []
    assert added[-1].name == "n10000"
    assert len({n.ip for n in after}) == 10_000
