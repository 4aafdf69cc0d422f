"""Benchmark: the multi-server VXLAN switch on one machine (tests/integration/switchlab.py: a switch host and three
servers, each a network namespace with its own sshd, on a veth underlay).

Run as root: .venv/bin/python bench/bench_switch.py [--rounds 3] [--megabytes 200]
Prints, in the same run: the wall time of `kestrel-switch up` (1 switch + 3 servers, over SSH) and of a second,
unchanged `up`; TCP throughput (a Python socket loop: one connection, 1 MiB writes) and ping latency between two
servers, on the underlay (server to server directly) and on the overlay (VM to VM, through the switch host).
Client and servers share this machine's cores; each figure is the median of the rounds.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kestrel import runner  # noqa: E402
from kestrel.net.netns import Topology  # noqa: E402
from kestrel.sysroot import Sysroot  # noqa: E402
from tests.integration import switchlab  # noqa: E402

SERVER = """import socket, sys
s = socket.create_server((sys.argv[1], 5201)); print("ready", flush=True)
c, _ = s.accept(); n = 0
while (b := c.recv(1 << 20)): n += len(b)
c.sendall(str(n).encode()); c.close()
"""
CLIENT = """import socket, sys, time
c = socket.create_connection((sys.argv[1], 5201)); block = b"x" * (1 << 20); total = int(sys.argv[2]) << 20
start = time.monotonic(); sent = 0
while sent < total: c.sendall(block); sent += len(block)
c.shutdown(socket.SHUT_WR); got = int(c.recv(64)); took = time.monotonic() - start
assert got == sent, (got, sent); print(f"{sent * 8 / took / 1e9:.3f}")
"""


def throughput(server_ns: str, server_ip: str, client_ns: str, megabytes: int) -> float:
    """Gbit/s of one TCP stream from CLIENT_NS to SERVER_IP."""
    srv = subprocess.Popen(
        runner.netns_argv(server_ns, [sys.executable, "-c", SERVER, server_ip]), stdout=subprocess.PIPE, text=True
    )
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        out = runner.run([sys.executable, "-c", CLIENT, server_ip, str(megabytes)], via=runner.Netns(client_ns))
        return float(out.stdout)
    finally:
        srv.wait(timeout=30)


def latency(ns: str, address: str) -> float:
    """Average ping RTT in ms (50 pings, 20 ms apart)."""
    out = runner.run(["ping", "-n", "-q", "-c", "50", "-i", "0.02", address], via=runner.Netns(ns)).stdout
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    assert match, out
    return float(match.group(1))


def timed_up(lab: switchlab.Lab) -> float:
    start = time.monotonic()
    proc = lab.switch("up")
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    switchlab.remove_stale()
    tmp = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    shutil.copytree(REPO / "etc-kestrel", tmp / "etc" / "kestrel")
    topo = Topology(prefix=switchlab.PREFIX)
    figures: dict[str, list[float]] = {}
    try:
        lab = switchlab.build(topo, Sysroot(tmp))
        try:
            switchlab.trust_all(lab)
            for _ in range(args.rounds):
                figures.setdefault("kestrel-switch up, 1 switch + 3 servers (s)", []).append(timed_up(lab))
                figures.setdefault("second up, nothing changed (s)", []).append(timed_up(lab))
                if lab.switch("down").returncode != 0:
                    raise SystemExit("kestrel-switch down failed")
            timed_up(lab)
            vms = switchlab.add_vms(topo, lab)
            s3 = f"{switchlab.UNDERLAY}.13"
            for _ in range(args.rounds):
                add = figures.setdefault
                add("underlay s2 -> s3 throughput (Gbit/s)", []).append(
                    throughput(lab.ns["s3"], s3, lab.ns["s2"], args.megabytes)
                )
                add("overlay vm2 -> vm3 via switch throughput (Gbit/s)", []).append(
                    throughput(vms["s3"], "10.98.0.3", vms["s2"], args.megabytes)
                )
                add("underlay s2 -> s3 ping RTT (ms)", []).append(latency(lab.ns["s2"], s3))
                add("overlay vm2 -> vm3 via switch ping RTT (ms)", []).append(latency(vms["s2"], "10.98.0.3"))
            lab.switch("down")
        finally:
            switchlab.stop(lab)
    finally:
        topo.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    for name, values in figures.items():
        print(f"{name:55s} median {statistics.median(values):8.3f}   ({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
