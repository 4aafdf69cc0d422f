"""Power commands against nodes that cannot be reached: one line naming the node, no traceback and no library
noise on stderr, nothing sent anywhere. A "node" whose port 22 accepts and closes without an SSH banner gave
"Error reading SSH protocol banner" and a stray "Traceback" line from paramiko's own thread before."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from kestrel import supervisor
from kestrel.net.netns import Topology
from kestrel.nodes import fanout, knownhosts, ssh
from kestrel.sysroot import Sysroot
from tests.integration import sshnodes
from tests.integration.test_exec import kestrel

# A TCP listener that closes every connection at once, without an SSH banner.
_MUTE = (
    "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('{ip}', 22))\ns.listen(8)\nprint('listening', flush=True)\nwhile True:\n    s.accept()[0].close()\n"
)


def test_unreachable_nodes_are_one_line_each(topology: Topology, tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    c = sshnodes.build(topology, root, count=1, down=1)  # node01 gets a mute port 22 instead of sshd; node02 is off
    supervisor.stop(root, "sshd-node01", timeout=5)
    mute = supervisor.start(root, "mute", ["python3", "-c", _MUTE.format(ip=c.nodes[0].ip)], netns=c.nodes[0].netns)
    try:
        assert supervisor.wait_for_log(mute, "listening", 10)
        for args in (["reboot", "node01"], ["poweroff", "--wait", "node01"], ["exec", "node01", "--", "true"]):
            proc = kestrel(c, "kestrel-nodes", *args)
            assert proc.returncode == 1 and proc.stdout == ""
            [line] = proc.stderr.splitlines()
            assert line.startswith("kestrel-nodes: ") and "node01" in line and "banner" in line.lower(), proc.stderr
        both = kestrel(c, "kestrel-nodes", "reboot", "--all")
        [line] = both.stderr.splitlines()
        assert "node01: " in line and "node02: " in line and line.endswith("(no reboot sent there)"), line
        usage = kestrel(c, "kestrel-nodes", "reboot")
        assert usage.returncode == 2 and usage.stderr == "kestrel-nodes: name the nodes, or give --group G or --all\n"
    finally:
        supervisor.stop(root, "mute", timeout=5)


def test_a_node_too_busy_to_answer_is_asked_again_a_refusal_is_not(topology: Topology, tmp_path: Path) -> None:
    """What a rollout does before its reboot request: a node whose sshd is stalled (SIGSTOP: the kernel accepts,
    no banner comes) is asked again until it answers; one that shows an unknown host key, or is off, is not waited
    for beyond what it is given."""
    c = sshnodes.build(topology, Sysroot(tmp_path), count=1, down=1)
    up, off = (ssh.Target(n.name, n.ip) for n in c.nodes)
    host_key = (c.image / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    resume = threading.Timer(4.0, os.kill, (c.nodes[0].pid, signal.SIGCONT))
    try:
        trusted = knownhosts.parse(f"* {host_key}")
        with ssh.root_pool(c.root, connect_timeout=1, netns_name=c.frontend, trusted=trusted) as pool:
            os.kill(c.nodes[0].pid, signal.SIGSTOP)
            resume.start()
            started = time.monotonic()
            assert fanout.reach(pool, [up], patience=60, pause=0.5) == {}
            waited = time.monotonic() - started
            assert 4.0 <= waited < 30, waited
            # the connection that answered is the one the request goes over
            assert pool.holds(up)
            assert fanout.run_many(pool, [up], "echo $SSH_CONNECTION", timeout=20)[0].stdout.split()[2] == up.address

            started = time.monotonic()
            gone = fanout.reach(pool, [off], patience=3, pause=0.5)
            assert time.monotonic() - started >= 2.5
            assert set(gone) == {off} and gone[off] in ("host unreachable", "no answer within 1 s"), gone
        with ssh.root_pool(c.root, connect_timeout=1, netns_name=c.frontend) as stranger:
            started = time.monotonic()
            refused = fanout.reach(stranger, [up], patience=60, pause=0.5)
            assert time.monotonic() - started < 10
            assert "is not listed for node01 in known_hosts" in refused[up], refused
    finally:
        resume.cancel()  # no signal from the timer once sshd is stopped and its PID free again
        os.kill(c.nodes[0].pid, signal.SIGCONT)
        sshnodes.stop(c)
