"""The slurm module in the booted lab: nodes join by themselves, srun and sbatch run the MPI program across both,
and the munge key is on the nodes' tmpfs but in no exported image."""

from __future__ import annotations

import re
import time
from pathlib import Path

from kestrel.sysroot import Sysroot
from tests.e2e.lab import NODES, ROOT, USER, on, wait_states
from tests.e2e.mpi import DIR, build_cpi, check_cpi


def test_both_nodes_idle_after_up_without_a_hand_edit(lab: str) -> None:
    # `kestrel-lab up` joined them right after SSH was ready: idle within 60 s of that, slurmctld never restarted.
    waited = wait_states(dict.fromkeys(NODES, "idle"), 60)
    print(f"both nodes idle {waited:.1f} s after kestrel-lab up returned")
    for node in NODES:
        assert f"{node}: joined Slurm (CPUs=" in lab or f"{node}: in Slurm (CPUs=" in lab, lab
    assert "Running as primary controller" in (ROOT / "var/log/slurm/slurmctld.log").read_text()


def test_srun_from_a_node_as_a_cluster_user(lab: str) -> None:
    started = time.monotonic()
    out = on("node02", "timeout 120 srun -N2 -l hostname", user=USER, timeout=180)
    print(f"srun -N2 -l hostname: {time.monotonic() - started:.2f} s (with SSH)")
    lines = sorted(line.split(": ", 1)[1] for line in out.splitlines())
    assert lines == ["0: node01", "1: node02"] or lines == ["0: node02", "1: node01"], out


# mpirun inside the allocation for each MPI (OpenMPI and MPICH's hydra both start their daemons with srun),
# then srun itself with the PMI each shares with Debian's Slurm: PMIx for OpenMPI, PMI-2 for MPICH.
JOB = """#!/bin/sh
#SBATCH -N 2 --ntasks-per-node=1 -t 10 -o {home}/{dir}/job-%j.out
cd {home}/{dir}
run() {{ label=$1; shift; start=$(date +%s.%N); timeout 240 "$@"; rc=$?; end=$(date +%s.%N)
  echo "$label rc=$rc wall=$(awk "BEGIN {{ print $end - $start }}")"; }}
run mpirun-openmpi mpirun ./cpi-openmpi
run mpiexec-mpich env -u HYDRA_HOST_FILE mpiexec.mpich ./cpi-mpich
run srun-pmix-openmpi srun --mpi=pmix ./cpi-openmpi
run srun-pmi2-mpich srun --mpi=pmi2 ./cpi-mpich
"""


def test_sbatch_wait_runs_the_mpi_program_across_both_nodes(lab: str) -> None:
    build_cpi("node02")
    home = f"/home/{USER}"
    script = JOB.format(home=home, dir=DIR).replace("'", "'\\''")
    submit = f"printf '%s' '{script}' > ~/{DIR}/cpi.job && timeout 600 sbatch --wait ~/{DIR}/cpi.job"
    out = on("node01", submit, user=USER, timeout=700)
    job = re.search(r"Submitted batch job (\d+)", out)
    assert job, out
    text = Sysroot(ROOT).path(f"{home}/{DIR}/job-{job[1]}.out").read_text()  # the shared home, seen from the frontend
    walls = {m[0]: float(m[1]) for m in re.findall(r"(\S+) rc=0 wall=([0-9.]+)", text)}
    print(f"job {job[1]} wall seconds: {walls}")
    for label in ("mpirun-openmpi", "mpiexec-mpich"):
        assert label in walls, text
    # every variant that ran printed a right pi from both nodes
    for block in re.split(r"\S+ rc=\d+ wall=\S+\n", text)[:-1]:
        if "pi=" in block:
            check_cpi(block)


def test_munge_key_on_the_nodes_but_in_no_image(lab: str) -> None:
    key = (ROOT / "etc/munge/munge.key").read_bytes()
    for node in NODES:
        assert on(node, "stat -c '%a %U' /etc/munge/munge.key") == f"{node}: 400 munge\n"
    images = Sysroot(ROOT).path("/srv/kestrel/images")
    found = []
    for path in images.rglob("*"):
        if path.name == "munge.key" or (path.is_file() and not path.is_symlink() and path.stat().st_size == len(key)):
            if path.name == "munge.key" or path.read_bytes() == key:
                found.append(str(path))
    assert found == [], found
    assert not list(Path(ROOT / "srv/kestrel/http").rglob("munge.key"))
