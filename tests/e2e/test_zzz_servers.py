"""Nodes on two servers through a VXLAN switch host (kestrel-lab up --servers 2): one qemu node on each of two
namespaced servers PXE-boots from the lab's frontend across the switch, registers with no command typed, and MPI
spans both as the cluster user.

The last e2e file: the shared lab's own qemu nodes are stopped first (two emulated guests more would slow every
boot on this machine), and what it adds is taken away after (its VMs, and the servers: of the lab's config, which
is kept between runs); the fixture's kestrel-lab down removes the servers' namespaces with the rest.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.lab import ROOT, USER, kestrel, on
from tests.e2e.mpi import BINARIES, build_cpi, check_cpi

SERVER_VMS = ("s1n01", "s2n01")


@pytest.fixture(scope="module")
def servers(lab: str) -> Iterator[dict[str, str]]:
    """kestrel-lab up --servers 2 (one node each) on the shared lab; VM name -> node name."""
    config = ROOT / "etc/kestrel/kestrel.yaml"
    saved = config.read_text()
    for row in json.loads(kestrel("kestrel-vm", "list", "--json").stdout):
        if row["state"] == "running" and not row["server"] and row["kind"] == "qemu":
            kestrel("kestrel-vm", "stop", row["name"])
    try:
        started = time.monotonic()
        up = kestrel("kestrel-lab", "up", "--servers", "2", "--nodes-per-server", "1", "--timeout", "400", timeout=500)
        print(f"\nkestrel-lab up --servers 2 --nodes-per-server 1: {time.monotonic() - started:.0f} s")
        print("\n".join(line for line in up.stderr.splitlines() if re.search(r"registered|SSH ready|Switch up", line)))
        status = json.loads(kestrel("kestrel-lab", "status", "--json").stdout)
        yield {n["vm"]: n["name"] for n in status["nodes"] if n["vm"] in SERVER_VMS}
    finally:
        kestrel("kestrel-vm", "stop", "--remove", *SERVER_VMS, check=False)
        config.write_text(saved)


def test_nodes_on_two_servers_register_and_run_mpi_across_the_switch(servers: dict[str, str]) -> None:
    assert sorted(servers) == list(SERVER_VMS), servers  # both registered, with no command typed
    rows = {r["name"]: r for r in json.loads(kestrel("kestrel-vm", "list", "--json").stdout)}
    assert [(rows[vm]["server"], rows[vm]["state"]) for vm in SERVER_VMS] == [("s1", "running"), ("s2", "running")]
    first, second = servers["s1n01"], servers["s2n01"]
    build_cpi(first)
    started = time.monotonic()
    out = on(first, f"timeout 240 mpirun --host {first},{second} -np 2 {BINARIES['openmpi']}", user=USER, timeout=300)
    print(f"mpirun -np 2 across s1 and s2: {time.monotonic() - started:.1f} s")
    check_cpi(out, hosts=(first, second))
    # the frames crossed the switch host: its VXLAN devices to s1 and s2 both received from their server
    status = json.loads(kestrel("kestrel-switch", "status", "--json").stdout)
    hub = {r["remote"]: r for r in status if r["server"] == "sw" and r["kind"] == "vxlan"}
    assert len(hub) == 3 and all((r["rx_packets"] or 0) > 100 for r in hub.values()), hub


def test_wake_starts_a_stopped_node_on_its_server(servers: dict[str, str]) -> None:
    kestrel("kestrel-vm", "stop", "s2n01")
    assert _state("s2n01") == "stopped"
    kestrel("kestrel-nodes", "wake", servers["s2n01"])
    deadline = time.monotonic() + 30
    while _state("s2n01") != "running" and time.monotonic() < deadline:
        time.sleep(1)
    assert _state("s2n01") == "running"


def _state(vm: str) -> str:
    rows = {r["name"]: r for r in json.loads(kestrel("kestrel-vm", "list", "--json").stdout)}
    return str(rows[vm]["state"])
