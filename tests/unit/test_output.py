"""How programs talk, as users run them: -q keeps only errors, -v adds every command with its time, data stays on
stdout, and colour appears only on a terminal without NO_COLOR."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from kestrel.sysroot import Sysroot
from tests.treestate import kestrel

RAN = re.compile(r"^Ran \S*dnsmasq --test --conf-file=\S+ in \d+\.\d\d s \(exit code 0\)$", re.M)
GARBAGE_LEASES = "1795000000 52:54:00:bb:00:01 10.10.0.150 * *\ngarbage line\n"


def test_normal_quiet_and_verbose(tree: Sysroot) -> None:
    normal = kestrel("reconfigure", tree.root, "--frontend")
    assert normal.returncode == 0 and normal.stdout == ""
    assert f"Created {tree.root}/etc/dnsmasq.d/kestrel.conf" in normal.stderr.splitlines()
    assert not RAN.search(normal.stderr)

    tree.path("/etc/kestrel/kestrel.yaml").write_text(
        tree.path("/etc/kestrel/kestrel.yaml").read_text().replace("lease_time: 12h", "lease_time: 1h")
    )
    verbose = kestrel("reconfigure", tree.root, "--frontend", "-v")
    assert verbose.returncode == 0
    assert RAN.search(verbose.stderr), verbose.stderr
    assert f"Wrote {tree.root}/etc/dnsmasq.d/kestrel.conf" in verbose.stderr.splitlines()

    tree.path("/etc/kestrel/kestrel.yaml").write_text(
        tree.path("/etc/kestrel/kestrel.yaml").read_text().replace("lease_time: 1h", "lease_time: 2h")
    )
    quiet = kestrel("reconfigure", tree.root, "--frontend", "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert "2h" in tree.path("/etc/dnsmasq.d/kestrel.conf").read_text()


def test_data_on_stdout_messages_on_stderr(tree: Sysroot, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(GARBAGE_LEASES)
    proc = kestrel("nodes", tree.root, "--register", "--no-verify", "--leases", str(leases))
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.splitlines()[0].startswith("Warning: ")
    listing = kestrel("nodes", tree.root, "list", "--json")
    assert listing.stderr == "" and '"name": "node01"' in listing.stdout


def _on_a_terminal(tree: Sysroot, leases: Path, extra_env: dict[str, str]) -> bytes:
    """kestrel-nodes --register with stderr (and stdout) on a pseudo-terminal; what the terminal received."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | extra_env
    main, side = pty.openpty()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kestrel.cli.nodes",
                "--root",
                str(tree.root),
                "--register",
                "--no-verify",
                "--leases",
                str(leases),
            ],
            stdin=subprocess.DEVNULL,
            stdout=side,
            stderr=side,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0
        os.close(side)
        side = -1
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        os.close(main)
        if side >= 0:
            os.close(side)


def test_colour_only_on_a_terminal_and_never_with_no_color(tree: Sysroot, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(GARBAGE_LEASES)
    coloured = _on_a_terminal(tree, leases, {})
    assert b"\x1b[33mWarning: " in coloured
    tree.path("/etc/kestrel/nodes").unlink()
    plain = _on_a_terminal(tree, leases, {"NO_COLOR": "1"})
    assert b"Warning: " in plain and b"\x1b[" not in plain
    piped = kestrel("nodes", tree.root, "--register", "--no-verify", "--leases", str(leases))
    assert "\x1b[" not in piped.stderr
