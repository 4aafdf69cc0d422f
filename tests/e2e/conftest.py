"""The lab of the e2e tier: up once for every e2e file, down (and checked gone) after the last one, so no qemu
node runs during the other tiers."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kestrel.net import netns
from tests.conftest import need_root
from tests.e2e.lab import ROOT, USER, kestrel

# Modules on in the lab beyond its defaults, for the e2e files that test them.
MODULES = "web,gateway,slurm,firewall"
# qemu nodes of the lab: 2, which most e2e files need. KESTREL_E2E_QEMU_NODES=0 runs a file that needs none
# (test_y_containers.py) without a qemu boot, for work on it on a busy machine.
QEMU_NODES = os.environ.get("KESTREL_E2E_QEMU_NODES", "2")


@pytest.fixture(scope="package")
def lab() -> Iterator[str]:
    need_root()
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    for stale in ("etc/kestrel/nodes", "var/lib/kestrel/nodes.json", "var/lib/kestrel/dnsmasq.leases"):
        (ROOT / stale).unlink(missing_ok=True)
    # and slurmctld's saved nodes: the names are handed out again, maybe to other addresses, and a stale dynamic
    # node shows idle until its new slurmd registers
    shutil.rmtree(ROOT / "var/lib/slurm/slurmctld", ignore_errors=True)
    try:
        # The tree, the services and the image first; the user before any node boots, since a user added
        # later is pushed to running nodes and into the image.
        kestrel(
            "kestrel-lab", "up", "--nodes", "0", "--prefix", prefix, "--modules", MODULES, "--rebuild", timeout=1800
        )
        if USER not in kestrel("kestrel-users", "list").stdout:
            kestrel("kestrel-users", "add", USER)
        up = kestrel("kestrel-lab", "up", "--nodes", QEMU_NODES, "--timeout", "600", timeout=900)
        yield up.stderr
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
