"""Image build benchmark: a cold `kestrel-images build default` against plain debootstrap of the same
package set (same run, same mirror, both with empty caches), a rebuild after editing one configure
script, and a forced rebuild from the cached base. Prints a table; needs root and the Debian mirror.

    .venv/bin/python bench/bench_images.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from kestrel import phases  # noqa: E402
from kestrel.config import Config  # noqa: E402
from kestrel.images import load_definition  # noqa: E402
from kestrel.sysroot import Sysroot  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed:\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def package_set(root: Sysroot) -> list[str]:
    """What the default image holds: its base packages plus every enabled module's list."""
    definition = load_definition(root, "default")
    lists = [s for s in phases.effective(root, phases.Side.NODE, "packages", Config().modules)]
    return sorted({*definition.bootstrap.packages, *(p for s in lists for p in phases.read_package_list(s))})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="kestrel-bench-", dir="/var/tmp"))
    tree = Sysroot(work / "root")
    shutil.copytree(REPO / "etc-kestrel", tree.path("/etc/kestrel"), dirs_exist_ok=True)
    env = dict(os.environ, KESTREL_CACHE_DIR=str(work / "cache"))  # empty: a cold build
    images = [str(BIN / "kestrel-images"), "--root", str(tree.root), "-q"]
    rows = []
    try:
        cold = timed([*images, "build", "default"], env)
        rows.append(("kestrel-images build default (cold: no base, no apt cache)", cold))
        packages = package_set(tree)
        target = work / "debootstrap"
        plain = timed(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", "bookworm",
                       str(target), "http://deb.debian.org/debian"])
        rows.append((f"plain debootstrap, same {len(packages)} packages (cold)", plain))
        shutil.rmtree(target, ignore_errors=True)

        override = tree.path("/etc/kestrel/node/configure.d/core_system")
        override.parent.mkdir(parents=True, exist_ok=True)
        override.write_text((REPO / "phases/node/configure.d/core_system").read_text() + "# edited\n")
        rows.append(("rebuild after editing one configure script", timed([*images, "build", "default"], env)))
        forced = timed([*images, "build", "default", "--force"], env)
        rows.append(("build --force (cached base, warm apt cache)", forced))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)}  seconds")
    for name, seconds in rows:
        print(f"{name.ljust(width)}  {seconds:7.1f}")
    print(f"\ncold build / plain debootstrap = {cold / plain:.2f}x (goal <= 0.5x)")
    print(f"rebuild after one configure edit = {rows[2][1]:.1f} s (goal <= 10 s)")


if __name__ == "__main__":
    main()
