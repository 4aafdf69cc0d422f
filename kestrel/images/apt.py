"""apt-get inside an image: its options, the guard that keeps services from starting, failures with the log's tail."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from kestrel import runner
from kestrel.errors import KestrelError
from kestrel.images import chroot

logger = logging.getLogger(__name__)


SCRIPT_TIMEOUT = 3600.0


TAIL_LINES = 15


APT_OPTIONS = [
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "Dpkg::Options::=--force-unsafe-io",
    "-o",
    "DPkg::Lock::Timeout=600",
]


class ScriptFailed(KestrelError):
    """A phase script failed: the build stops."""


# Every installed kernel without an initrd gets one (fixed text, no value interpolated).
MISSING_INITRDS = """for k in /boot/vmlinuz-*; do
  [ -e "$k" ] || continue
  v=${k#/boot/vmlinuz-}
  [ -e "/boot/initrd.img-$v" ] || update-initramfs -c -k "$v"
done"""


# The packages of "$@" that are installed, removed with their configuration (fixed text, names as arguments):
# kestrel-apt's recorded removals, some of which a rebuild may never have installed.
REMOVE_INSTALLED = """installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "$@" 2>/dev/null |
  sed -n 's/^ii *//p')
# shellcheck disable=SC2086  # one package a word
[ -z "$installed" ] || apt-get remove --purge -y -o Dpkg::Options::=--force-confold $installed"""


def drop_apt_indexes(image_root: Path) -> None:
    """Package indexes are ~160 MiB a version and stale by the next build (kestrel-apt updates first)."""
    for path in (*(image_root / "var/lib/apt/lists").glob("*_*"), *(image_root / "var/cache/apt").glob("*.bin")):
        if path.is_file():
            path.unlink()


def log_tail(log: Path, start: int = 0, lines: int = TAIL_LINES) -> str:
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@contextmanager
def image_guard(image_root: Path | None) -> Iterator[None]:
    """While phases or apt run in an image: no service may start (policy-rc.d) and apt can resolve the mirror."""
    if image_root is None:
        yield
        return
    made = []
    policy = image_root / "usr/sbin/policy-rc.d"
    resolv = image_root / "etc/resolv.conf"
    if not policy.exists() and not policy.is_symlink():
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text("#!/bin/sh\n# kestrel: no service starts while the image is built\nexit 101\n")
        policy.chmod(0o755)
        made.append(policy)
    if not resolv.exists() and not resolv.is_symlink() and resolv.parent.is_dir():
        resolv.write_text("")
        made.append(resolv)
    try:
        yield
    finally:
        for path in made:
            # a script may have replaced it on purpose (core writes resolv.conf): keep a non-empty one
            if path == resolv and path.is_file() and path.stat().st_size:
                continue
            path.unlink(missing_ok=True)


def apt_get(image_root: Path, steps: list[list[str]], *, out: IO[bytes], log: Path, apt_cache: Path) -> None:
    """`apt-get -y ARGS` inside IMAGE_ROOT for each ARGS of STEPS, no service starting; output to OUT (the file
    LOG); ScriptFailed with LOG's tail at the first failing step."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    with image_guard(image_root):
        for args in steps:
            logger.info(f"Executing : image_apt-get {' '.join(args)}")
            out.write(f"==> apt-get {' '.join(args)}\n".encode())
            out.flush()
            proc = runner.run(
                ["apt-get", "-y", *APT_OPTIONS, *args],
                via=chroot.Chroot(image_root, apt_cache),
                env=env,
                output=out,
                timeout=SCRIPT_TIMEOUT,
                check=False,
            )
            if not proc.ok:
                raise ScriptFailed(
                    f"apt-get {' '.join(args)} failed: {proc.why()}; last lines of {log}:\n{log_tail(log)}"
                )
