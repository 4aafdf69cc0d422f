"""Image build benchmark: a cold `kestrel-images build default` against plain debootstrap of the same
package set (same run, same mirror, both with empty caches), a rebuild after editing one configure
script, and a forced rebuild from the cached base. Prints a table; needs root and the Debian mirror.
The cold pair runs ROUNDS times, interleaved, so a slow spell of the machine hits both sides; the
ratio is the median of the rounds' ratios.

    .venv/bin/python bench/bench_images.py [--rounds N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from kestrel.config import Config  # noqa: E402
from kestrel.images import scripts  # noqa: E402
from kestrel.images.definitions import load_definition  # noqa: E402
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
    lists = [s for s in scripts.effective(root, scripts.Side.NODE, "packages", Config().modules)]
    return sorted({*definition.bootstrap.packages, *(p for s in lists for p in scripts.read_package_list(s))})


def cold_pair(work: Path, n: int, packages: list[str] | None) -> tuple[float, float, list[str]]:
    """One cold `kestrel-images build default` (new tree, empty cache) and one plain debootstrap of its package
    set. Nothing is deleted until the end and dirty pages are flushed before each run (`sync`): neither side
    pays for the other's clean-up or write-back."""
    tree = Sysroot(work / f"root-{n}")
    shutil.copytree(REPO / "etc-kestrel", tree.path("/etc/kestrel"), dirs_exist_ok=True)
    os.sync()
    cold = timed([*images_argv(tree), "build", "default"], dict(os.environ, KESTREL_CACHE_DIR=str(work / f"cache-{n}")))
    packages = packages or package_set(tree)
    os.sync()
    plain = timed(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            "bookworm",
            str(work / f"debootstrap-{n}"),
            "http://deb.debian.org/debian",
        ]
    )
    return cold, plain, packages


def images_argv(tree: Sysroot) -> list[str]:
    return [str(BIN / "kestrel-images"), "--root", str(tree.root), "-q"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="cold build / debootstrap pairs (default 1)")
    parser.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="kestrel-bench-", dir="/var/tmp"))
    rows, ratios = [], []
    packages: list[str] | None = None
    try:
        for n in range(1, args.rounds + 1):
            cold, plain, packages = cold_pair(work, n, packages)
            ratios.append(cold / plain)
            rows.append((f"round {n}: kestrel-images build default (cold: no base, no apt cache)", cold))
            rows.append((f"round {n}: plain debootstrap, same {len(packages)} packages (cold)", plain))
        tree = Sysroot(work / f"root-{args.rounds}")
        env = dict(os.environ, KESTREL_CACHE_DIR=str(work / f"cache-{args.rounds}"))
        override = tree.path("/etc/kestrel/node/configure.d/core_system")
        override.parent.mkdir(parents=True, exist_ok=True)
        override.write_text((REPO / "phases/node/configure.d/core_system").read_text() + "# edited\n")
        rebuild = timed([*images_argv(tree), "build", "default"], env)
        rows.append(("rebuild after editing one configure script", rebuild))
        forced = timed([*images_argv(tree), "build", "default", "--force"], env)
        rows.append(("build --force (cached base, warm apt cache)", forced))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)}  seconds")
    for name, seconds in rows:
        print(f"{name.ljust(width)}  {seconds:7.1f}")
    print(
        f"\ncold build / plain debootstrap = {statistics.median(ratios):.2f}x, median of "
        f"{' '.join(f'{r:.2f}' for r in ratios)} (goal <= 0.5x)"
    )
    print(f"rebuild after one configure edit = {rebuild:.1f} s (goal <= 10 s)")


if __name__ == "__main__":
    main()
