"""MPI that communicates, across both lab nodes, with OpenMPI, as a cluster user in the shared home (MPICH:
test_zy_mpich.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.lab import USER, on
from tests.e2e.mpi import BINARIES, build_cpi, check_cpi


@pytest.fixture(scope="module")
def cpi(lab: str) -> Iterator[None]:
    build_cpi()
    yield


def test_cpi_with_openmpi_over_ssh(cpi: None) -> None:
    out = on(
        "node01",
        f"timeout 240 mpirun --hostfile /etc/kestrel/hostfiles/openmpi -np 2 {BINARIES['openmpi']}",
        user=USER,
        timeout=300,
    )
    check_cpi(out)


def test_mpi4py_ringtest(lab: str) -> None:
    out = on(
        "node01",
        "timeout 240 mpirun --hostfile /etc/kestrel/hostfiles/openmpi -np 2 "
        "python3 -m mpi4py.bench ringtest -n 1024 -l 10",
        user=USER,
        timeout=300,
    )
    # "time for 10 loops = 0.00123 seconds (2 processes, 1024 bytes)"
    assert re.search(r"time for 10 loops = \S+ seconds \(2 processes, 1024 bytes\)", out), out
