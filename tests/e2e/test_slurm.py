"""The slurm module in the booted lab: nodes join by themselves, the munge key is on the nodes' tmpfs but in no
exported image, and the cluster user runs srun and a batch job of cpi across both nodes (srun with PMIx, the PMI
that Debian's Slurm and OpenMPI share, and mpirun inside the allocation), its output in the shared home."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from kestrel.sysroot import Sysroot
from tests.e2e.lab import NODES, ROOT, USER, on, wait_states
from tests.e2e.mpi import DIR, build_cpi, check_cpi

# Each launch of cpi in the job is timed on the node (wall seconds, start of the launcher to its exit).
JOB = f"""#!/bin/sh
#SBATCH --job-name=cpi-e2e --nodes=2 --ntasks-per-node=1 --time=10
#SBATCH --output=cpi-%j.out
cd ~/{DIR}
launch() {{
    echo "== $1"
    started=$(date +%s%N)
    "$@"
    status=$?
    echo "== $1 wall=$(( ($(date +%s%N) - started) / 1000000 )) ms exit=$status"
}}
launch srun --mpi=pmix ./cpi-openmpi
launch mpirun ./cpi-openmpi
"""


def test_both_nodes_idle_after_up_without_a_hand_edit(lab: str) -> None:
    # `kestrel-lab up` joined them right after SSH was ready: idle within 60 s of that, slurmctld never restarted.
    waited = wait_states(dict.fromkeys(NODES, "idle"), 60)
    print(f"both nodes idle {waited:.1f} s after kestrel-lab up returned")
    for node in NODES:
        assert f"{node}: joined Slurm (CPUs=" in lab or f"{node}: in Slurm (CPUs=" in lab, lab
    assert "Running as primary controller" in (ROOT / "var/log/slurm/slurmctld.log").read_text()


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


def test_srun_on_both_nodes_as_the_cluster_user(lab: str) -> None:
    wait_states(dict.fromkeys(NODES, "idle"), 60)
    out = on(
        "node01",
        "started=$(date +%s%N); timeout 60 srun -N2 -l hostname; echo took=$(( ($(date +%s%N) - started) / 1000000 ))",
        user=USER,
    )
    lines = [line.split(": ", 1)[1] for line in out.splitlines()]
    # -l: each line carries its task's rank; which node gets rank 0 is Slurm's choice
    ranks = dict(line.split(": ", 1) for line in lines[:-1])
    assert sorted(ranks) == ["0", "1"] and sorted(ranks.values()) == list(NODES), out
    print(f"srun -N2 -l hostname: {lines[-1].removeprefix('took=')} ms on node01")


def test_sbatch_wait_runs_cpi_across_both_nodes_with_srun_and_mpirun(lab: str) -> None:
    build_cpi()
    encoded = base64.b64encode(JOB.encode()).decode()
    out = on(
        "node02",
        f"cd ~/{DIR} && rm -f cpi-*.out && echo {encoded} | base64 -d > cpi.sbatch && "
        "timeout 300 sbatch --wait --parsable cpi.sbatch",
        user=USER,
        timeout=360,
    )
    job = out.split(": ", 1)[1].strip()
    assert job.isdigit(), out
    # the job's output, written by node01's slurmd (the first node of the allocation), read on the frontend
    text = (ROOT / f"home/{USER}/{DIR}/cpi-{job}.out").read_text()
    parts = dict(re.findall(r"^== (srun|mpirun)\n(.*?)^== \1 wall=", text, re.M | re.S))
    assert sorted(parts) == ["mpirun", "srun"], text
    walls = {k: int(v) for k, v in re.findall(r"^== (srun|mpirun) wall=(\d+) ms exit=0$", text, re.M)}
    assert sorted(walls) == ["mpirun", "srun"], text
    for launcher, output in parts.items():
        seconds = check_cpi(output)
        print(f"cpi under {launcher} in job {job}: {walls[launcher]} ms wall, {seconds:.4f} s in MPI_Wtime")
