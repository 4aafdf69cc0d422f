"""Benchmark: Slurm in a booted lab with the slurm module (issue 13's figures), against mpirun over SSH in the same
run: `srun -N2 hostname`, and cpi (tests/e2e/mpi.py) across both nodes launched by mpirun over SSH (no Slurm, the
baseline), and by srun --mpi=pmix and by mpirun inside a batch job (sbatch -N2, the job of tests/e2e/test_slurm.py).

Run as root with a lab up (the e2e tier's, or `kestrel-lab up --nodes 2 --modules slurm` and `kestrel-users add
alice`): .venv/bin/python bench/bench_slurm.py [--root /var/lib/kestrel-lab-e2e] [--rounds 5]
Every figure is wall time on node01, as the cluster user, from the launcher's start to its exit (median, min and
max of the rounds, taken interleaved). The nodes are TCG-emulated qemu VMs sharing this machine's cores.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUTSIDE = {
    "mpirun over SSH (baseline)": "mpirun --hostfile /etc/kestrel/hostfiles/openmpi -np 2 ./cpi-openmpi",
    "srun -N2 hostname": "srun -N2 hostname",
}
# the batch job of tests/e2e/test_slurm.py times its own launches of cpi: "== srun wall=1234 ms exit=0"
INSIDE = {"srun": "srun --mpi=pmix in sbatch -N2", "mpirun": "mpirun in sbatch -N2"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=os.environ.get("KESTREL_E2E_ROOT", "/var/lib/kestrel-lab-e2e"))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.environ["KESTREL_E2E_ROOT"] = args.root  # tests.e2e.lab reads it at import
    from tests.e2e.lab import USER, on
    from tests.e2e.mpi import DIR, build_cpi
    from tests.e2e.test_slurm import JOB

    build_cpi()
    encoded = base64.b64encode(JOB.encode()).decode()
    # one exec per round, the cases interleaved; each prints "CASE<TAB>ms" once its launcher exited 0
    script = f"cd ~/{DIR} && echo {encoded} | base64 -d > cpi.sbatch && " + " && ".join(
        f"s=$(date +%s%N) && timeout 120 {command} > /dev/null && "
        f"printf '%s\\t%s\\n' '{name}' $(( ($(date +%s%N) - s) / 1000000 ))"
        for name, command in OUTSIDE.items()
    )
    script += " && job=$(timeout 300 sbatch --wait --parsable cpi.sbatch) && cat cpi-$job.out && rm cpi-$job.out"
    times: dict[str, list[int]] = {name: [] for name in [*OUTSIDE, *INSIDE.values()]}
    for _ in range(args.rounds):
        for line in on("node01", script, user=USER, timeout=900).splitlines():
            text = line.split(": ", 1)[1]
            if found := re.fullmatch(r"== (srun|mpirun) wall=(\d+) ms exit=0", text):
                times[INSIDE[found[1]]].append(int(found[2]))
            elif text.count("\t") == 1 and text.split("\t")[0] in OUTSIDE:
                times[text.split("\t")[0]].append(int(text.split("\t")[1]))
    baseline = statistics.median(times[next(iter(OUTSIDE))])
    print(f"{'case':40} {'median ms':>10} {'min':>7} {'max':>7} {'vs baseline':>12}")
    for name, ms in times.items():
        assert len(ms) == args.rounds, (name, ms)
        median = statistics.median(ms)
        print(f"{name:40} {median:>10.0f} {min(ms):>7} {max(ms):>7} {median / baseline:>11.2f}x")


if __name__ == "__main__":
    main()
