"""Programs run on the host reach nodes whose cluster network lives in a namespace (network.netns, the lab)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.integration import sshnodes

BIN = Path(sys.executable).parent


def kestrel(root: Sysroot, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """On the host, not inside the namespace: the sockets to the nodes are opened in network.netns."""
    return subprocess.run(
        [str(BIN / program), "--root", str(root.root), *args], capture_output=True, text=True, timeout=120
    )


def test_exec_and_check_from_the_host(topology: Topology, tmp_path: Path) -> None:
    cluster = sshnodes.build(topology, Sysroot(tmp_path), count=2)
    try:
        config = cluster.root.path("/etc/kestrel/kestrel.yaml")
        config.write_text(config.read_text().replace("network: {", f"network: {{netns: {cluster.frontend}, "))
        assert kestrel(cluster.root, "kestrel-users", "sync", "--no-push").returncode == 0
        proc = kestrel(cluster.root, "kestrel-nodes", "exec", "--", "echo", "$SSH_CONNECTION")
        assert proc.returncode == 0, proc.stderr
        assert sorted(line.split()[0] + line.split()[3] for line in proc.stdout.splitlines()) == [
            "node01:10.10.0.101",
            "node02:10.10.0.102",
        ]
        check = kestrel(cluster.root, "kestrel-nodes", "check", "--json")
        rows = json.loads(check.stdout)
        assert [(r["name"], r["ping"].split()[0], r["ssh"]) for r in rows] == [
            ("node01", "icmp", "ok"),
            ("node02", "icmp", "ok"),
        ], check.stderr
    finally:
        sshnodes.stop(cluster)
