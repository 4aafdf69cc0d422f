"""kestrel-nodes exec/check against 20 real sshd processes in namespaces, one registered node powered off."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kestrel import runner
from kestrel.errors import CommandError
from kestrel.net.netns import Topology
from kestrel.nodes import fanout, knownhosts, ssh
from kestrel.sysroot import Sysroot
from tests.integration import sshnodes

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def kestrel(
    cluster: sshnodes.Cluster, program: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A Kestrel program run inside the frontend's namespace, as an admin would there."""
    argv = ["ip", "netns", "exec", cluster.frontend, str(VENV / program), "--root", str(cluster.root.root), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cluster(topology: Topology, tmp_path: Path):
    c = sshnodes.build(topology, Sysroot(tmp_path), count=20, down=1)
    try:
        yield c
    finally:
        sshnodes.stop(c)


def test_exec_on_20_nodes_with_one_down(cluster: sshnodes.Cluster) -> None:
    assert kestrel(cluster, "kestrel-users", "sync", "--no-push").returncode == 0
    proc = kestrel(cluster, "kestrel-nodes", "exec", "--connect-timeout", "3", "--", "echo", "$SSH_CONNECTION")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    up = [n for n in cluster.nodes if n.netns]
    assert len(lines) == 20
    for node in up:
        assert f"{node.name}: 10.10.0.1 " in proc.stdout
        assert any(line.startswith(f"{node.name}: ") and line.split()[3] == node.ip for line in lines)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kestrel-nodes: failed on 1 of 21 nodes: node21 ("), last
    # A subset by name succeeds and exits 0; the remote command's own exit code counts as a failure.
    ok = kestrel(cluster, "kestrel-nodes", "exec", "node01", "node20", "--", "true")
    assert ok.returncode == 0, ok.stderr
    bad = kestrel(cluster, "kestrel-nodes", "exec", "node02", "--", "exit 3")
    assert bad.returncode == 1
    assert "failed on 1 of 1 nodes: node02 (exit code 3)" in bad.stderr


def test_check_marks_the_down_node(cluster: sshnodes.Cluster) -> None:
    assert kestrel(cluster, "kestrel-users", "sync", "--no-push").returncode == 0
    proc = kestrel(cluster, "kestrel-nodes", "check", "--json")
    assert proc.returncode == 1
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert len(rows) == 21
    for node in cluster.nodes[:20]:
        row = rows[node.name]
        assert row["ping"].startswith("icmp ") and row["ssh"] == "ok", row
        # /home is a bind mount here (no NFS client in this kernel): mounted (ok), and said not to be NFS.
        assert row["home"] == "ext4 (not NFS)" and row["ok"] is True
    assert rows["node21"]["ping"] == "icmp: no reply" and rows["node21"]["ssh"] != "ok"
    listing = json.loads(kestrel(cluster, "kestrel-nodes", "list", "--json").stdout)
    states = {n["name"]: n["state"] for n in listing}
    assert states["node21"] == "down" and states["node01"] == "up"
    hostfile = kestrel(cluster, "kestrel-nodes", "hostfile").stdout
    assert "node01" in hostfile and "node21" not in hostfile
    # A new cluster user is pushed to the 20 running nodes; node21, known to be down, is not waited for.
    added = kestrel(cluster, "kestrel-users", "add", "dave")
    assert added.returncode == 0, added.stderr
    assert "Updated the cluster users on 20 running nodes" in added.stderr and "node21" not in added.stderr


def test_unknown_host_key_is_refused(cluster: sshnodes.Cluster) -> None:
    # No known_hosts written: Kestrel never trusts a key on first use.
    proc = kestrel(cluster, "kestrel-nodes", "exec", "node01", "--", "true")
    assert proc.returncode == 1
    assert "node01 (host key ssh-ed25519 SHA256:" in proc.stderr and "is not listed for node01" in proc.stderr


def test_ssh_failures_read_like_any_command(topology: Topology, tmp_path: Path) -> None:
    """The runner's one sentence, on a node: the command, where, how it ended, the last stderr line."""
    cluster = sshnodes.build(topology, Sysroot(tmp_path), count=1, down=1)
    try:
        host_key = (cluster.image / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
        up, down = (ssh.Target(n.name, n.ip) for n in cluster.nodes)
        with ssh.root_pool(
            cluster.root, connect_timeout=2, netns_name=cluster.frontend, trusted=knownhosts.parse(f"* {host_key}")
        ) as pool:

            def said(command: str, target: ssh.Target = up, timeout: float = 20) -> str:
                result = runner.run([command], via=pool.on(target), timeout=timeout, check=False)
                assert not result.ok
                return result.sentence()

            ok = runner.run(["echo", "$SSH_CONNECTION"], via=pool.on(up), timeout=20)  # the remote shell expands
            assert ok.ok and ok.stdout.split()[2] == up.address and ok.where == "on node01"
            assert said("echo first >&2; echo last >&2; exit 4") == (
                "'echo first >&2; echo ...' on node01: exit code 4: last"
            )
            missing = said("kt-no-such-command")
            assert missing.startswith("'kt-no-such-command' on node01: exit code 127: ") and missing.endswith(
                "not found"
            ), missing
            assert said("kill -TERM $$") == "'kill -TERM $$' on node01: killed by a signal"
            assert said("sleep 5", timeout=0.5) == "'sleep 5' on node01: timed out after 0.5 s"
            unreachable = said("true", down)
            assert unreachable in ("'true' on node02: host unreachable", "'true' on node02: no answer within 2 s")
            with pytest.raises(CommandError) as e:
                runner.run(["exit 3"], via=pool.on(up), timeout=20)
            assert str(e.value) == "'exit 3' on node01: exit code 3"
            # the fan-out keeps the order of its targets
            both = fanout.run_many(pool, [down, up], "hostname -I", timeout=20)
            assert [r.where for r in both] == ["on node02", "on node01"]
            assert both[1].ok and both[1].stdout.split() == [up.address] and both[0].returncode is None
    finally:
        sshnodes.stop(cluster)


def test_exec_keeps_one_connection_per_node_between_commands(topology: Topology, tmp_path: Path) -> None:
    """The SSH keeper: a second exec runs over the connections the first opened (sshd accepts each key once)."""
    cluster = sshnodes.build(topology, Sysroot(tmp_path), count=3)
    try:
        assert kestrel(cluster, "kestrel-users", "sync", "--no-push").returncode == 0
        for _ in range(3):
            proc = kestrel(cluster, "kestrel-nodes", "exec", "--", "echo", "$SSH_CONNECTION")
            assert proc.returncode == 0, proc.stderr
            assert len(proc.stdout.splitlines()) == 3
        for node in cluster.nodes:
            log = cluster.root.path(f"/var/log/kestrel/sshd-{node.name}.log").read_text()
            assert log.count("Accepted publickey for root") == 1, log
        ports = {line.split()[2] for line in proc.stdout.splitlines()}
        assert len(ports) == 3  # one source port per node, the same each time
        assert "SSH keeper listening" in cluster.root.path("/var/log/kestrel/ssh-keeper.log").read_text()
    finally:
        sshnodes.stop(cluster)
    assert not cluster.root.path("/run/kestrel/ssh-keeper.json").exists()
