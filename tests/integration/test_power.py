"""Power commands against nodes that cannot be reached: one line naming the node, no traceback and no library
noise on stderr, nothing sent anywhere. A "node" whose port 22 accepts and closes without an SSH banner gave
"Error reading SSH protocol banner" and a stray "Traceback" line from paramiko's own thread before."""

from __future__ import annotations

from pathlib import Path

from kestrel import supervisor
from kestrel.net.netns import Topology
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
