"""The README's main command, end to end: a 2-node lab boots from the network, registers, runs MPI, wakes.

The lab's tree is kept between runs (KESTREL_E2E_ROOT, default /var/lib/kestrel-lab-e2e) so the image is
built once; the registry is emptied first so registration is tested on every run. Namespaces get a fresh
kt- prefix. qemu runs in software emulation here (~100 s per boot).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kestrel.net import netns
from kestrel.sysroot import Sysroot
from tests.conftest import need_root

BIN = Path(sys.executable).parent
ROOT = Path(os.environ.get("KESTREL_E2E_ROOT", "/var/lib/kestrel-lab-e2e"))
USER = "alice"


def kestrel(program: str, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KESTREL_ROOT=str(ROOT), KESTREL_CONFIG=str(ROOT / "etc/kestrel/kestrel.yaml"))
    env.setdefault("KESTREL_CACHE_DIR", "/var/cache/kestrel")
    proc = subprocess.run([str(BIN / program), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, f"{program} {' '.join(args)}: {proc.stderr[-3000:]}"
    return proc


def on(node: str, command: str, user: str = "root", timeout: float = 120) -> str:
    return kestrel("kestrel-nodes", "exec", "--user", user, node, "--", command, timeout=timeout).stdout


@pytest.fixture(scope="module")
def lab() -> Iterator[str]:
    need_root()
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    for stale in ("etc/kestrel/nodes", "var/lib/kestrel/nodes.json", "var/lib/kestrel/dnsmasq.leases"):
        (ROOT / stale).unlink(missing_ok=True)
    try:
        # The tree, the services and the image first; the user before any node boots, since a user added
        # later is pushed to running nodes and into the image.
        kestrel("kestrel-lab", "up", "--nodes", "0", "--prefix", prefix, "--rebuild", timeout=1800)
        if USER not in kestrel("kestrel-users", "list").stdout:
            kestrel("kestrel-users", "add", USER)
        yield prefix
    finally:
        down = kestrel("kestrel-lab", "down", timeout=300, check=False)
        assert down.returncode == 0, down.stderr
        assert not [n for n in _namespaces() if n.startswith(prefix)]
        assert not _processes_of_the_tree()


def _namespaces() -> list[str]:
    return [line.split()[0] for line in netns.runner.run(["ip", "netns", "list"]).stdout.splitlines() if line]


def _processes_of_the_tree() -> list[str]:
    """Live processes whose command line names the lab's tree (qemu, dnsmasq, nginx, ganesha, the listener)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if str(ROOT) in cmdline and "pytest" not in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_two_nodes_boot_register_and_answer(lab: str) -> None:
    up = kestrel("kestrel-lab", "up", "--nodes", "2", "--timeout", "600", timeout=900)
    for vm in ("node01", "node02"):
        assert f"{vm}: registered as {vm} (" in up.stderr and f"{vm}: SSH ready" in up.stderr, up.stderr
    names = kestrel("kestrel-nodes", "list", "--json").stdout
    assert '"node01"' in names and '"node02"' in names
    out = kestrel("kestrel-nodes", "exec", "--", "hostname").stdout
    assert sorted(out.splitlines()) == ["node01: node01", "node02: node02"]


def test_names_resolve_and_the_root_is_a_read_only_nfs_image_under_tmpfs(lab: str) -> None:
    out = on("node01", "getent hosts node02; findmnt -n -o FSTYPE /; findmnt -n -o FSTYPE,OPTIONS /run/rootovl/ro")
    lines = out.splitlines()
    assert lines[0].startswith("node01: 10.10.0.") and "node02.cluster.local" in lines[0], out
    assert lines[1] == "node01: overlay", out
    assert lines[2].split()[1] == "nfs" and " ro," in " " + lines[2].split()[2] + ",", out


def test_mpi_across_nodes_as_a_cluster_user(lab: str) -> None:
    hostfile = on("node01", "cat /etc/kestrel/hostfiles/openmpi", user=USER)
    assert "node01" in hostfile and "node02" in hostfile, hostfile
    out = on("node01", "mpirun --hostfile /etc/kestrel/hostfiles/openmpi -np 2 hostname", user=USER, timeout=180)
    assert sorted(line.split(": ", 1)[1] for line in out.splitlines()) == ["node01", "node02"], out
    out = on("node02", "mpiexec.mpich -f /etc/kestrel/hostfiles/mpich -n 2 hostname", user=USER, timeout=180)
    assert sorted(line.split(": ", 1)[1] for line in out.splitlines()) == ["node01", "node02"], out


def test_home_is_shared_and_the_root_overlay_stays_on_the_node(lab: str) -> None:
    token = secrets.token_hex(8)
    on("node01", f"echo {token} > ~/e2e-probe", user=USER)
    assert on("node02", "cat ~/e2e-probe", user=USER) == f"node02: {token}\n"
    on("node01", f"echo {token} > /kestrel-e2e-probe")
    image = Sysroot(ROOT).path("/srv/kestrel/images/default")
    assert not (image / "kestrel-e2e-probe").exists()
    assert on("node02", "test -e /kestrel-e2e-probe && echo there || echo absent") == "node02: absent\n"


def test_rebuilds_keep_the_root_that_running_nodes_booted(lab: str) -> None:
    def default() -> dict[str, Any]:
        return next(i for i in json.loads(kestrel("kestrel-images", "list", "--json").stdout) if i["name"] == "default")

    booted = default()["version"]
    kestrel("kestrel-nodes", "check")  # learns the root each node booted, from its kernel command line
    states = json.loads((ROOT / "var/lib/kestrel/nodes.json").read_text())["nodes"]
    assert [s.get("root", "").rsplit("/", 2)[-2:] for s in states.values()] == [["default.versions", booted]] * 2
    for _ in range(2):  # two new versions: the booted one is no longer current nor the previous one
        kestrel("kestrel-reconfigure", "--image", "default", timeout=600)
    now = default()
    assert now["version"] != booted and booted in now["versions"], now
    assert now["used_by"] == {booted: ["node01", "node02"]}, now
    exports = (ROOT / "etc/ganesha/kestrel-exports.conf").read_text()
    assert f'/default.versions/{booted}"' in exports and f'/default.versions/{now["version"]}"' in exports
    out = on("node01", "cat /etc/debian_version; ls /usr/bin | wc -l")
    assert out.splitlines()[0].startswith("node01: 12.") and int(out.splitlines()[1].split()[1]) > 100, out


def test_power_off_then_wake_on_lan(lab: str) -> None:
    kestrel("kestrel-vm", "stop", "node02")
    gone = kestrel("kestrel-nodes", "exec", "--connect-timeout", "3", "node02", "--", "true", check=False)
    assert gone.returncode == 1
    wake = kestrel("kestrel-nodes", "wake", "node02")
    assert "Sent magic packet for node02 (" in wake.stderr
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        probe = kestrel("kestrel-nodes", "exec", "--connect-timeout", "5", "node02", "--", "true", check=False)
        if probe.returncode == 0:
            break
        time.sleep(5)
    else:
        pytest.fail("node02 did not answer SSH within 600 s of its magic packet")
    assert on("node02", "hostname") == "node02: node02\n"
