"""kestrel-users with real sshd nodes: a cluster user logs in between namespaces with its key; removal locks it out.

The nodes run before the user exists: the user reaches them by push over SSH, without a reboot.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kestrel import runner
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.integration import sshnodes
from tests.integration.test_exec import kestrel


@pytest.fixture
def cluster(topology: Topology, tmp_path: Path):
    c = sshnodes.build(topology, Sysroot(tmp_path), count=2)
    try:
        yield c
    finally:
        sshnodes.stop(c)


SSH_OPTS = [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "PasswordAuthentication=no",
    "-o",
    "UpdateHostKeys=no",
    "-o",
    "ConnectTimeout=10",
]


def node_to_node(cluster: sshnodes.Cluster, uid: int, command: str) -> runner.Result:
    """As the user, on node01, with only what node01 has: its /etc (pushed), the shared home and its key."""
    src, dst = cluster.nodes[0], cluster.nodes[1]
    return cluster.ssh_in(src, ["ssh", *SSH_OPTS, dst.ip, command], uid=uid)


def frontend_to_node(cluster: sshnodes.Cluster, user: str, command: str) -> subprocess.CompletedProcess[str]:
    root = cluster.root
    key = root.path(f"/home/{user}/.ssh/id_ed25519")
    argv = [
        "ip",
        "netns",
        "exec",
        cluster.frontend,
        "ssh",
        *SSH_OPTS,
        "-i",
        str(key),
        "-l",
        user,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"GlobalKnownHostsFile={root.path('/etc/ssh/ssh_known_hosts')}",
        "-o",
        "UserKnownHostsFile=/dev/null",
        cluster.nodes[1].ip,
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_cluster_user_logs_in_with_its_key_until_removed(cluster: sshnodes.Cluster) -> None:
    root, image = cluster.root, cluster.image
    added = kestrel(cluster, "kestrel-users", "add", "alice")
    assert added.returncode == 0, added.stderr
    assert "Updated the cluster users on 2 running nodes" in added.stderr
    assert "Updated the cluster users of image test" in added.stderr
    assert "alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash" in (image / "etc/passwd").read_text()
    assert "alice:*:" in (image / "etc/shadow").read_text()
    home = root.path("/home/alice")
    assert home.stat().st_uid == 2000 and (home.stat().st_mode & 0o777) == 0o700
    public = (home / ".ssh/id_ed25519.pub").read_text()
    assert (home / ".ssh/authorized_keys").read_text() == public

    # The running nodes got alice by push: into their writable layer (what a netbooted node's tmpfs is).
    for n in cluster.nodes:
        assert "alice:x:2000:" in root.path(f"/var/tmp/nodes/{n.name}/upper/passwd").read_text()
        assert "alice:x:2000:" in cluster.ssh_in(n, ["getent", "passwd", "alice"]).stdout

    # Node to node, as MPI does: uid 2000 on node01 with the shared home's key and node01's known_hosts.
    hop = node_to_node(cluster, 2000, "id -un; echo $SSH_CONNECTION")
    assert hop.returncode == 0, hop.stderr
    name, connection = hop.stdout.splitlines()
    assert name == "alice" and connection.split()[0] == cluster.nodes[0].ip
    assert connection.split()[2] == cluster.nodes[1].ip
    # Frontend to node with the known_hosts Kestrel wrote and StrictHostKeyChecking=yes.
    front = frontend_to_node(cluster, "alice", "id -u")
    assert (front.returncode, front.stdout) == (0, "2000\n"), front.stderr
    # kestrel-nodes exec as the cluster user, with alice's own key.
    as_alice = kestrel(cluster, "kestrel-nodes", "exec", "--user", "alice", "--", "id", "-un")
    assert as_alice.returncode == 0, as_alice.stderr
    assert as_alice.stdout.splitlines() == ["node01: alice", "node02: alice"]
    # Root's key is not alice's: the frontend key opens root on nodes, never the reverse.
    assert not root.path("/root/.ssh/authorized_keys").exists()

    removed = kestrel(cluster, "kestrel-users", "remove", "alice", "--keep-home")
    assert removed.returncode == 0, removed.stderr
    assert "alice:" not in (image / "etc/passwd").read_text()
    assert (home / ".ssh/id_ed25519").exists()  # the key is still there: only the account is gone
    assert cluster.ssh_in(cluster.nodes[1], ["getent", "passwd", "alice"]).returncode == 2
    after = frontend_to_node(cluster, "alice", "id -u")
    assert after.returncode == 255 and "Permission denied" in after.stderr
    listing = kestrel(cluster, "kestrel-users", "list", "--json")
    assert listing.stdout.strip() == "[]"


def test_keys_that_open_the_frontends_root_are_reported(cluster: sshnodes.Cluster) -> None:
    root = cluster.root
    assert kestrel(cluster, "kestrel-users", "--add-to-cluster", "bob").returncode == 0  # KestrelHPC spelling
    assert kestrel(cluster, "kestrel-users", "list").stdout.splitlines()[1].split()[:2] == ["bob", "2000"]
    bad = root.path("/root/.ssh/authorized_keys")
    bad.write_text(root.path("/home/bob/.ssh/id_ed25519.pub").read_text())
    proc = kestrel(cluster, "kestrel-users", "check")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"kestrel-users: {bad}: cluster user bob's key gives access to the frontend's root account; remove that line"
    )
    refused = kestrel(cluster, "kestrel-users", "add", "root")
    assert refused.returncode == 2
