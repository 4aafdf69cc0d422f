"""Commands inside an image tree (the Chroot Via): chroot in a private mount and pid namespace with /proc,
/sys, /dev.

The mounts live only in a namespace made for the one command (unshare --mount --pid --fork --kill-child):
when the command ends, the kernel drops them and kills whatever it left running, even after a crash or a
timeout. Nothing is ever mounted in the frontend's own namespace, so an image is never exported with
something mounted inside it (its NFS clients then fail with 'Invalid cross-device link');
`assert_unmounted` checks it anyway.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kestrel import runner
from kestrel.errors import KestrelError

# Fixed text: every value reaches it as a positional argument, never interpolated.
_WRAPPER = """set -e
root=$1; cache=$2; lists=$3; shift 3
mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount --rbind /dev "$root/dev"
if [ -n "$cache" ]; then
  mount --bind "$cache" "$root/var/cache/apt/archives"
  mount --bind "$lists" "$root/var/lib/apt/lists"
fi
if [ -f /etc/resolv.conf ] && [ -f "$root/etc/resolv.conf" ] && [ ! -L "$root/etc/resolv.conf" ]; then
  mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
fi
exec chroot "$root" "$@"
"""


def apt_lists(apt_cache: Path, digest: str) -> Path:
    """The package indexes of one set of sources, beside the shared archives and shared by every image with
    those sources: `apt-get update` fetches only what changed (and drops only its own sources' stale files),
    and no image version carries ~160 MiB of indexes."""
    return apt_cache.with_name("apt-lists") / digest[:16]


def _digest(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def sources_digest(image_root: Path) -> str:
    """What the image fetches indexes from: its sources.list and sources.list.d files."""
    etc = image_root / "etc/apt"
    paths = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    return _digest([(path.name, path.read_bytes()) for path in paths if path.is_file()])


def sources_text_digest(sources_list: str) -> str:
    """sources_digest of a tree whose only source file is a sources.list with this text (a new base)."""
    return _digest([("sources.list", sources_list.encode())])


# The indexes were just fetched (a bootstrap or an update a moment ago): a build's packages phase then
# skips its own `apt-get update`. Short, so a mirror that moved on is never trusted for long.
FRESH_STAMP = ".kestrel-fresh"
FRESH_SECONDS = 300.0


def mark_lists_fresh(apt_cache: Path, image_root: Path) -> None:
    lists = apt_lists(apt_cache, sources_digest(image_root))
    lists.mkdir(parents=True, exist_ok=True)
    (lists / FRESH_STAMP).write_text("")


def lists_fresh(apt_cache: Path, image_root: Path) -> bool:
    try:
        age = time.time() - (apt_lists(apt_cache, sources_digest(image_root)) / FRESH_STAMP).stat().st_mtime
    except FileNotFoundError:
        return False
    return 0 <= age < FRESH_SECONDS


def wrapper_argv(
    image_root: Path, argv: Sequence[str], apt_cache: Path | None = None, lists: Path | None = None
) -> list[str]:
    """APT_CACHE and LISTS (its index folder for the image's sources) are bound into the image, when given."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        _WRAPPER,
        "kestrel-chroot",
        str(image_root),
        str(apt_cache or ""),
        str(lists or ""),
        *argv,
    ]


@dataclass(frozen=True)
class Chroot:
    """Runs commands inside IMAGE_ROOT (a runner.Via): runner.run(argv, via=Chroot(tree)). APT_CACHE, if
    given, is bound in with the indexes of the image's sources; nothing stays mounted afterwards."""

    image_root: Path
    apt_cache: Path | None = None

    @property
    def where(self) -> str:
        return f"in chroot {self.image_root}"

    def execute(self, argv: list[str], how: runner.How) -> runner.Ended:
        for sub in ("proc", "sys", "dev"):
            (self.image_root / sub).mkdir(exist_ok=True)
        lists = None
        if self.apt_cache is not None:
            self.apt_cache.mkdir(parents=True, exist_ok=True)
            lists = apt_lists(self.apt_cache, sources_digest(self.image_root))
            (lists / "partial").mkdir(parents=True, exist_ok=True)
            (self.image_root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
            (self.image_root / "var/lib/apt/lists").mkdir(parents=True, exist_ok=True)
        try:
            return runner.local(wrapper_argv(self.image_root, argv, self.apt_cache, lists), how)
        finally:
            assert_unmounted(self.image_root)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below PATH in this process's mount namespace."""
    real = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == real or point.startswith(real.rstrip("/") + "/"):
                found.append(point)
    return found


def assert_unmounted(image_root: Path) -> None:
    """Nothing mounted below IMAGE_ROOT (the tree itself may be a mount: the overlay of a new version)."""
    left = [m for m in mounts_under(image_root) if m != os.path.realpath(image_root)]
    if left:
        raise KestrelError(
            f"{image_root}: still mounted after the chroot: {', '.join(left)}; "
            f"unmount them (umount -R) before exporting the image"
        )
