"""Benchmark: `kestrel-nodes exec -- true` and `kestrel-nodes check` on N sshd nodes in namespaces vs sequential
OpenSSH, in the same run.

Run as root: .venv/bin/python bench/bench_exec.py [--nodes 50] [--rounds 3]
Client and servers share this machine's cores; every figure is the median wall time of the rounds, taken
interleaved. "own connections" is exec with the SSH keeper off (KESTREL_SSH_KEEPER=off: a handshake per node in
every run); "kept connections" is exec as it runs by default, through the keeper (started by the warm-up run).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kestrel.net.netns import Topology  # noqa: E402
from kestrel.sysroot import Sysroot  # noqa: E402
from tests.integration import sshnodes  # noqa: E402

VENV = REPO / ".venv" / "bin"
SEQUENTIAL = (
    'for ip; do ssh -q -i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=yes '
    '-o GlobalKnownHostsFile="$KNOWN" -o UserKnownHostsFile=/dev/null root@"$ip" true || exit 1; done'
)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:6]} failed: {proc.stderr.strip()[-400:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    topo = Topology(prefix=f"kt-{secrets.token_hex(2)[:3]}")
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp:
        root = Sysroot(tmp)
        cluster = None
        try:
            cluster = sshnodes.build(topo, root, count=args.nodes)
            front = ["ip", "netns", "exec", cluster.frontend]
            nodes_program = [*front, str(VENV / "kestrel-nodes"), "--root", tmp]
            kestrel = [*nodes_program, "exec"]
            check = [*nodes_program, "check", "--parallel", str(args.nodes)]
            timed([*front, str(VENV / "kestrel-users"), "--root", tmp, "sync", "--no-push"])
            ips = [n.ip for n in cluster.nodes]
            env = {
                "KEY": str(root.path("/root/.ssh/id_ed25519")),
                "KNOWN": str(root.path("/etc/ssh/ssh_known_hosts")),
                "PATH": "/usr/bin:/bin",
            }
            own = {**os.environ, "KESTREL_SSH_KEEPER": "off"}
            cases = {
                "sequential ssh (OpenSSH, one after another)": ([*front, "sh", "-c", SEQUENTIAL, "sh", *ips], env),
                "exec, own connections, --parallel 16": ([*kestrel, "--", "true"], own),
                f"exec, own connections, --parallel {args.nodes}": (
                    [*kestrel, "--parallel", str(args.nodes), "--", "true"],
                    own,
                ),
                "exec, kept connections, --parallel 16": ([*kestrel, "--", "true"], None),
                f"exec, kept connections, --parallel {args.nodes}": (
                    [*kestrel, "--parallel", str(args.nodes), "--", "true"],
                    None,
                ),
                f"check, own connections, --parallel {args.nodes}": (check, own),
                f"check, kept connections, --parallel {args.nodes}": (check, None),
            }
            timed([*kestrel, "--", "true"])  # warm-up: starts the keeper, which connects to every node
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, (argv, case_env) in cases.items():  # interleaved: load from others hits every case alike
                    times[name].append(timed(argv, case_env))
            print_table(times, args.nodes)
        finally:
            if cluster:
                sshnodes.stop(cluster)
            problems = topo.destroy()
            if problems:
                print("cleanup problems:", problems, file=sys.stderr)


def print_table(times: dict[str, list[float]], nodes: int) -> None:
    base = statistics.median(next(iter(times.values())))
    print(f"`true` on {nodes} sshd nodes in network namespaces, median of {len(next(iter(times.values())))} rounds")
    print(f"{'method':<46} {'wall s':>7} {'per node ms':>12} {'speedup':>8}  rounds")
    for name, values in times.items():
        med = statistics.median(values)
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<46} {med:>7.2f} {med / nodes * 1000:>12.0f} {base / med:>7.1f}x  {rounds}")


if __name__ == "__main__":
    main()
