"""Slurm from a rendered tree, for real: slurmctld + munged as the lab supervises them (one process group, private
/run) in a frontend namespace; two namespaced "nodes" whose slurmd joins configless as a dynamic node with the
line Kestrel makes from its `slurmd -C`; `srun -N2 hostname` answers from both.

The nodes are namespaces of this host, not machines: each gets its own network, host name and /run (its munge
socket, slurmd's pid), a tmpfs for slurmd's spool and log, and a munged of its own with the frontend's key. The
host has no systemd and mixed cgroup v1 mounts: the default `slurm.cgroups: false` (proctrack/linuxproc) holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kestrel import runner, supervisor
from kestrel.config import load_config
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.lab.cluster import wait_port
from kestrel.net.netns import Topology
from kestrel.slurm import conf, controller
from kestrel.sysroot import Sysroot
from tests.conftest import REPO, eventually, write_config

NODES = {"node01": "10.10.0.11", "node02": "10.10.0.12"}
# In the node's own namespaces: its name, a private /run with its own munged (the frontend's key), slurmd's spool
# and log on tmpfs; then the command, and munged stops with it.
_NODE_SCRIPT = (
    'hostname "$1" && mount -t tmpfs tmpfs /run && install -d -o munge -g munge /run/munge && '
    "mount -t tmpfs tmpfs /var/spool && mkdir /var/spool/slurmd && mount -t tmpfs tmpfs /var/log/slurm && "
    'mount -t tmpfs tmpfs /usr/local/lib && mkdir /usr/local/lib/kestrel && cp "$3" /usr/local/lib/kestrel/ || exit 1; '
    'runuser -u munge -- munged -F --key-file="$2" --seed-file=/run/munge/seed & m=$!; '
    "i=0; while [ ! -S /run/munge/munge.socket.2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
    'shift 3; "$@"; rc=$?; kill $m; wait $m; exit $rc'
)


@pytest.fixture
def tree() -> Iterator[Sysroot]:
    """A --root tree that the slurm and munge users can walk into (pytest's own tmp folders are root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="kt-slurm-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        shutil.copytree(REPO / "etc-kestrel", folder / "etc/kestrel")
        yield Sysroot(folder)
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def cluster(topology: Topology, tree: Sysroot) -> Iterator[Sysroot]:
    text = tree.path("/etc/kestrel/kestrel.yaml").read_text()
    text = text.replace("modules: [core, nfsroot, sshd, openmpi]", "modules: [core, nfsroot, sshd, slurm]")
    config_path = write_config(tree, text + "slurm:\n  slurmd_timeout: 10\n")
    config = load_config(config_path)
    fe = topology.add_netns("fe")
    topology.add_bridge(fe, "br0", str(config.network.address))
    for i, ip in enumerate(NODES.values()):
        ns = topology.add_netns(f"n{i}")
        topology.add_veth(fe, f"v{i}", ns, f"e{i}", master_a=topology.name("br0"), address_b=f"{ip}/24")
    runner.run(["ip", "-n", fe, "link", "set", topology.name("br0"), "up"])
    reconfigure_frontend(tree, config, config_path)
    # the node side of the module (its TaskProlog) from the shipped image script
    script = REPO / "phases/node/configure.d/slurm_node"
    runner.run([str(script)], env={"PATH": os.environ["PATH"], "KESTREL_IMAGE_ROOT": str(tree.path("/node-image"))})
    supervisor.start(tree, controller.SERVICE, controller.launcher_argv(tree), netns=fe, private_run=True)
    try:
        assert wait_port(fe, str(config.network.ip), config.slurm.port, 30), _log(tree, "slurm/slurmctld.log")
        yield tree
    finally:
        supervisor.stop(tree, controller.SERVICE)


def in_node(topology: Topology, tree: Sysroot, index: int, name: str, argv: list[str]) -> list[str]:
    """ARGV inside node INDEX's network namespace (nsenter: `ip netns exec` would remount /sys, hiding cgroups)."""
    ns = topology.name(f"n{index}")
    unshare = ["unshare", "-m", "-u", "--propagation", "private", "sh", "-c", _NODE_SCRIPT, "sh"]
    prolog = tree.path(f"/node-image{conf.TASK_PROLOG}")
    return ["nsenter", f"--net=/run/netns/{ns}", *unshare, name, str(tree.path(conf.MUNGE_KEY)), str(prolog), *argv]


def _log(tree: Sysroot, name: str) -> str:
    path = tree.path(f"/var/log/{name}")
    return path.read_text(errors="replace")[-2000:] if path.exists() else f"(no {path})"


def test_two_namespaced_slurmd_join_configless_and_srun_answers(
    cluster: Sysroot, topology: Topology, tmp_path: Path
) -> None:
    tree = cluster
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    facts = runner.run(["slurmd", "-C"]).stdout
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        for i, node in enumerate(NODES):
            line = conf.node_line(conf.parse_hardware(facts), "compute", config.slurm.memory_headroom_mb)
            assert line.startswith("CPUs=") and line.endswith(" Feature=compute"), line
            slurmd = ["slurmd", "-D", "-Z", "-N", node, "--conf-server", str(config.network.ip), "--conf", line]
            argv = in_node(topology, tree, i, node, slurmd)
            log = (tmp_path / f"slurmd-{node}.out").open("wb")
            daemons.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        sinfo = ["env", f"SLURM_CONF={tree.path(conf.SLURM_CONF)}", "sinfo", "-h", "-N", "-o", "%N %T %P %m"]
        srun_argv = in_node(topology, tree, 0, "node01", sinfo)

        def idle() -> bool:
            lines = runner.run(srun_argv, check=False, timeout=20).stdout.split("\n")
            return sorted(line.split()[:2] for line in lines if line) == [["node01", "idle"], ["node02", "idle"]]

        started = time.monotonic()
        assert eventually(idle, 60, 1), _log(tree, "slurm/slurmctld.log") + "\n".join(
            (tmp_path / f"slurmd-{n}.out").read_text(errors="replace")[-1500:] for n in NODES
        )
        print(f"both idle {time.monotonic() - started:.1f} s after slurmd started")
        rows = runner.run(srun_argv, timeout=20).stdout.split("\n")
        memory = int(conf.parse_hardware(facts).memory_mb) - config.slurm.memory_headroom_mb  # type: ignore[union-attr]
        assert all(r.split()[2:] == ["compute*", str(memory)] for r in rows if r), rows

        srun = ["env", f"SLURM_CONF={tree.path(conf.SLURM_CONF)}", "srun", "-N2", "-l", "hostname"]
        argv = in_node(topology, tree, 1, "node02", srun)
        started = time.monotonic()
        result = runner.run(argv, timeout=60, check=False)
        out = result.stdout
        assert result.ok, result.stderr
        print(f"srun -N2 hostname: {time.monotonic() - started:.2f} s")
        lines = [line.split(": ") for line in out.split("\n") if line]
        assert sorted(rank for rank, _ in lines) == ["0", "1"] and sorted(n for _, n in lines) == list(NODES), out
    finally:
        for d in daemons:
            os.killpg(d.pid, 15)
            d.wait(15)
