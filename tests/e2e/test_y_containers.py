"""Container nodes beside the lab's qemu nodes (issue: container nodes): 16 of them start on the published image,
get their addresses from the lab's dnsmasq and register through the lease hook, run an MPI program that
communicates across all 16 as the cluster user, join Slurm, and leave nothing behind once stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import ROOT, USER, kestrel, on, wait_states
from tests.e2e.mpi import build_cpi, check_cpi

COUNT = 16
VMS = [f"ct{i:02d}" for i in range(1, COUNT + 1)]


@pytest.fixture(scope="module")
def containers(lab: str) -> Iterator[list[str]]:
    """The registered names of the 16 container nodes; stopped, forgotten and checked gone afterwards."""
    names: list[str] = []
    try:
        kestrel("kestrel-lab", "up", "--kind", "container", "--nodes", str(COUNT), "--timeout", "300", timeout=600)
        status = json.loads(kestrel("kestrel-lab", "status", "--json").stdout)
        names = sorted(n["name"] for n in status["nodes"] if n["kind"] == "container")
        yield names
    finally:
        kestrel("kestrel-vm", "stop", "--remove", *VMS, timeout=300)
        for name in names:
            kestrel("kestrel-nodes", "remove", name)
        assert not list((ROOT / "run/kestrel/containers").glob("*.json"))
        assert not [link for link in Path("/sys/class/net").iterdir() if link.name.startswith("kc-")]


def test_sixteen_container_nodes_register_through_dnsmasq(containers: list[str]) -> None:
    assert len(set(containers)) == COUNT
    log = (ROOT / "var/log/kestrel/dnsmasq.log").read_text()
    registry = json.loads(kestrel("kestrel-nodes", "list", "--json").stdout)
    for node in (n for n in registry if n["name"] in containers):
        assert f" {node['ip']} {node['mac']} {node['name']}" in log  # leased and named by dnsmasq: no shortcut
    said = kestrel("kestrel-nodes", "exec", *containers, "--", "hostname").stdout.splitlines()
    assert sorted(said) == sorted(f"{n}: {n}" for n in containers)


def test_cpi_across_sixteen_container_nodes_as_a_cluster_user(containers: list[str]) -> None:
    # Compiled on a container node, in a folder of its own: a binary that a qemu node has just written over NFS
    # is still open for writing in the NFS server for a while, and exec of it on the frontend's side (where
    # container nodes see the homes) fails with "Text file busy".
    build_cpi(containers[0], "mpi-e2e-containers")
    out = on(
        containers[0],
        f"timeout 240 mpirun --host {','.join(containers)} -np {COUNT} ~/mpi-e2e-containers/cpi-openmpi",
        user=USER,
        timeout=300,
    )
    check_cpi(out, ranks=COUNT, hosts=tuple(containers))


def test_slurm_runs_a_step_on_every_container_node(containers: list[str]) -> None:
    wait_states(dict.fromkeys(containers, "idle"), 180, node=containers[0])
    out = on(containers[0], f"timeout 120 srun -N{COUNT} -w {','.join(containers)} hostname", user=USER, timeout=180)
    assert sorted(line.split(": ", 1)[1] for line in out.splitlines()) == containers
