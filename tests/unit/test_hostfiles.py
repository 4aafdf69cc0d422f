"""Hostfiles: golden OpenMPI/MPICH/Slurm/hosts files, selection by state and group, host range folding."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.config import Config
from kestrel.nodes.hostfiles import Format, expand_hostlist, fold_hostlist, render_hostfile, select
from kestrel.nodes.registry import Node
from kestrel.nodes.state import NodeState, State
from kestrel.sysroot import Sysroot
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "hostfiles"


def fixture_cluster() -> tuple[list[Node], dict[str, NodeState]]:
    def n(name: str, last: int, group: str = "compute") -> Node:
        return Node(name, f"52:54:00:aa:00:{last:02x}", IPv4Address(f"10.10.0.{10 + last}"), "default", group)

    nodes = [
        n("node10", 10),
        n("node01", 1),
        n("node02", 2),
        n("node03", 3),
        n("node04", 4),
        n("node07", 7),
        n("gpu1", 21, "gpu"),
        n("gpu2", 22, "gpu"),
        n("login", 30, "login"),
        n("node05", 5),
    ]
    up = {"cpus": 4, "memory_mb": 3923}
    states = {
        **{
            f"52:54:00:aa:00:{i:02x}": NodeState(State.UP, 1795000000, up["cpus"], up["memory_mb"])
            for i in (1, 2, 3, 4, 7, 10)
        },
        "52:54:00:aa:00:15": NodeState(State.UP, 1795000000, 8, 15951),
        "52:54:00:aa:00:16": NodeState(State.DOWN, 1795000000, 8, 15951),
        "52:54:00:aa:00:1e": NodeState(State.UP, 1795000000),  # seen, never visited: 1 slot
    }
    return nodes, states  # node05 was never seen


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("everything", [False, True], ids=["up", "all"])
def test_golden_hostfiles(tree: Sysroot, fmt: Format, everything: bool, update_golden: bool) -> None:
    nodes, states = fixture_cluster()
    text = render_hostfile(tree, Config(), fmt, select(nodes, states, everything=everything))
    golden = GOLDEN / f"{fmt}{'-all' if everything else ''}"
    if update_golden:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_the_slurm_file_folds_ranges_and_has_a_partition_per_group(tree: Sysroot) -> None:
    nodes, states = fixture_cluster()
    lines = render_hostfile(tree, Config(), Format.SLURM, select(nodes, states)).splitlines()
    assert lines[2:] == [
        "NodeName=gpu1 CPUs=8 RealMemory=15951 State=UNKNOWN",
        "NodeName=login CPUs=1 State=UNKNOWN",
        "NodeName=node[01-04,07,10] CPUs=4 RealMemory=3923 State=UNKNOWN",
        "PartitionName=compute Nodes=node[01-04,07,10] Default=YES MaxTime=INFINITE State=UP",
        "PartitionName=gpu Nodes=gpu1 Default=NO MaxTime=INFINITE State=UP",
        "PartitionName=login Nodes=login Default=NO MaxTime=INFINITE State=UP",
    ]


def test_group_selection() -> None:
    nodes, states = fixture_cluster()
    assert [e.name for e in select(nodes, states, group="gpu")] == ["gpu1"]
    assert [e.name for e in select(nodes, states, group="gpu", everything=True)] == ["gpu1", "gpu2"]
    assert select(nodes, states, group="none") == []


@pytest.mark.parametrize(
    ("names", "folded"),
    [
        (["node01", "node02", "node03", "node04"], "node[01-04]"),
        (["node04", "node01", "node03", "node02"], "node[01-04]"),
        (["node01", "node03", "node04", "node09"], "node[01,03-04,09]"),
        (["node9", "node10", "node11"], "node9,node[10-11]"),
        (["node07"], "node07"),
        (["login", "node01", "node02", "gpu1"], "login,node[01-02],gpu1"),
        (["n1x2", "n1x3"], "n1x[2-3]"),
        ([], ""),
    ],
)
def test_fold_examples(names: list[str], folded: str) -> None:
    assert fold_hostlist(names) == folded
    assert sorted(expand_hostlist(folded)) == sorted(names)


hostnames = st.from_regex(r"[a-z]{1,3}[0-9]{0,4}", fullmatch=True)


@given(st.lists(hostnames, max_size=40))
def test_folding_loses_and_invents_no_host(names: list[str]) -> None:
    folded = fold_hostlist(names)
    expanded = expand_hostlist(folded)
    assert sorted(expanded) == sorted(set(names))


@given(st.sets(st.integers(0, 300), min_size=1))
def test_a_contiguous_run_folds_to_one_range(numbers: set[int]) -> None:
    low, high = min(numbers), max(numbers)
    names = [f"node{i:03d}" for i in range(low, high + 1)]
    assert fold_hostlist(names) == (f"node{low:03d}" if low == high else f"node[{low:03d}-{high:03d}]")
