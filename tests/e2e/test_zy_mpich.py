"""MPICH's cpi across both lab nodes as a cluster user in the shared home. It runs after the disruptive file, so
that a run that hangs in MPI_Finalize (its ranks spin under emulation until killed) cannot slow the nodes those
tests reboot."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.lab import NODES, USER, kestrel
from tests.e2e.mpi import BINARIES, build_cpi, check_cpi


@pytest.fixture(scope="module")
def cpi(lab: str) -> Iterator[None]:
    build_cpi()
    yield
    _kill_leftover_ranks()


def _kill_leftover_ranks() -> None:
    """The rank left spinning in ucp_disconnect_nb after mpiexec was killed, on either node."""
    kestrel(
        "kestrel-nodes",
        "exec",
        "--user",
        USER,
        *NODES,
        "--",
        "pkill -KILL -x -u $(id -u) cpi-mpich; true",
        timeout=120,
        check=False,
    )


# Debian 12's MPICH 4.0.2 (ch4:ucx) prints pi and then, in about one run in four here even on 2 nodes, hangs in
# MPI_Finalize: one rank spins in ucp_disconnect_nb while its peer waits in the final PMI barrier and so never
# progresses UCX (fixed upstream by pmodels/mpich#6596, in MPICH 4.2). Only that failure is retried.
MPICH_ATTEMPTS = 6


def test_cpi_with_mpich_over_ssh(cpi: None) -> None:
    hung = 0
    for _ in range(MPICH_ATTEMPTS):
        run = kestrel(
            "kestrel-nodes",
            "exec",
            "--user",
            USER,
            "node02",
            "--",
            f"timeout -k 5 45 mpiexec.mpich -f /etc/kestrel/hostfiles/mpich -n 2 {BINARIES['mpich']}",
            timeout=150,
            check=False,
        )
        check_cpi(run.stdout)  # right before Finalize, hung or not
        if run.returncode == 0:
            break
        # the timeout, nothing else (a killed session may end without an exit status)
        assert re.search(r"exit code (124|137)|killed by a signal", run.stderr), run.stderr
        hung += 1
        _kill_leftover_ranks()
    else:
        raise AssertionError(f"MPICH cpi hung in MPI_Finalize in all {MPICH_ATTEMPTS} runs")
    print(f"MPICH cpi: {hung} run(s) hung in MPI_Finalize before a clean one")
