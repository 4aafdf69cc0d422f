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
