"""A real MPI program for the e2e lab: cpi (pi by integration, MPI_Bcast + MPI_Reduce), built with each MPI."""

from __future__ import annotations

import base64
import math
import re

from tests.e2e.lab import NODES, USER, on

# rank 0 alone knows the interval count: the others get it through MPI_Bcast, and the pieces come back through
# MPI_Reduce, so a right answer needs both collectives to have crossed the network.
CPI_C = r"""
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int rank, size, len, n;
    char name[MPI_MAX_PROCESSOR_NAME];
    double h, x, sum = 0.0, mine, pi = 0.0, start;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(name, &len);
    printf("rank %d of %d on %s\n", rank, size, name);
    fflush(stdout);
    n = rank == 0 ? 2000000 : 0;
    start = MPI_Wtime();
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    h = 1.0 / n;
    for (int i = rank + 1; i <= n; i += size) {
        x = h * (i - 0.5);
        sum += 4.0 / (1.0 + x * x);
    }
    mine = h * sum;
    MPI_Reduce(&mine, &pi, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("pi=%.15f ranks=%d seconds=%.6f\n", pi, size, MPI_Wtime() - start);
    MPI_Finalize();
    return 0;
}
"""

DIR = "mpi-e2e"  # in the user's shared home
BINARIES = {"mpich": f"~/{DIR}/cpi-mpich", "openmpi": f"~/{DIR}/cpi-openmpi"}


def build_cpi(node: str = "node01", directory: str = DIR) -> None:
    """cpi.c into ~/DIRECTORY of the shared home as the cluster user, compiled there with mpicc.mpich and
    mpicc.openmpi (once)."""
    encoded = base64.b64encode(CPI_C.encode()).decode()
    on(
        node,
        f"mkdir -p ~/{directory} && cd ~/{directory} && echo {encoded} | base64 -d > cpi.c.new && "
        "{ cmp -s cpi.c.new cpi.c && rm cpi.c.new || mv cpi.c.new cpi.c; } && "
        "{ [ cpi-mpich -nt cpi.c ] || timeout 300 mpicc.mpich -O2 -o cpi-mpich cpi.c; } && "
        "{ [ cpi-openmpi -nt cpi.c ] || timeout 300 mpicc.openmpi -O2 -o cpi-openmpi cpi.c; }",
        user=USER,
        timeout=700,
    )


def check_cpi(output: str, ranks: int = 2, hosts: tuple[str, ...] = NODES) -> float:
    """The pi that cpi printed is right to 1e-6, from RANKS ranks on HOSTS (the lab's two nodes); returns its
    seconds."""
    found = re.search(r"pi=([0-9.]+) ranks=(\d+) seconds=([0-9.]+)", output)
    assert found, output
    assert abs(float(found[1]) - math.pi) < 1e-6 and int(found[2]) == ranks, output
    assert set(re.findall(r"rank \d+ of \d+ on (\S+)", output)) == set(hosts), output
    return float(found[3])
