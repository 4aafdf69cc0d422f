"""The e2e lab shared by every file in tests/e2e/: one booted 2-node lab per test session.

The lab's tree is kept between runs (KESTREL_E2E_ROOT, default /var/lib/kestrel-lab-e2e) so the image is
built once; the registry is emptied first so registration is tested on every run. Namespaces get a fresh
kt- prefix. qemu runs in software emulation here (~100 s per boot). Files run in name order; a test that
stops or reboots nodes belongs in test_z_disruptive.py and leaves both nodes SSH-ready again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(os.environ.get("KESTREL_E2E_ROOT", "/var/lib/kestrel-lab-e2e"))
USER = "alice"
NODES = ("node01", "node02")


def kestrel(program: str, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KESTREL_ROOT=str(ROOT), KESTREL_CONFIG=str(ROOT / "etc/kestrel/kestrel.yaml"))
    env.setdefault("KESTREL_CACHE_DIR", "/var/cache/kestrel")
    proc = subprocess.run([str(BIN / program), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, f"{program} {' '.join(args)}: {proc.stderr[-3000:]}"
    return proc


def on(node: str, command: str, user: str = "root", timeout: float = 120) -> str:
    return kestrel("kestrel-nodes", "exec", "--user", user, node, "--", command, timeout=timeout).stdout


def states(node: str = "node01") -> dict[str, str]:
    """sinfo on NODE as the cluster user: node name -> state (idle, down*, ...)."""
    out = on(node, "timeout 30 sinfo -h -N -o '%N %T'", user=USER)
    return {parts[1]: parts[2] for parts in (line.split() for line in out.splitlines()) if len(parts) == 3}


def wait_states(wanted: dict[str, str], seconds: float, node: str = "node01") -> float:
    """Seconds until sinfo shows WANTED (node -> state), at most SECONDS."""
    started = time.monotonic()
    seen: dict[str, str] = {}
    while time.monotonic() - started < seconds:
        seen = states(node)
        if all(seen.get(n) == s for n, s in wanted.items()):
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"sinfo shows {seen}, not {wanted}, after {seconds:g} s")
