"""The base's finishing touches: excluded paths pruned, shared package indexes trusted only while fresh."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kestrel.images import bootstrap, chroot, definitions
from kestrel.sysroot import Sysroot


def test_prune_keeps_copyrights_only(tmp_path: Path) -> None:
    for rel in (
        "usr/share/doc/libc6/copyright",
        "usr/share/doc/libc6/changelog.gz",
        "usr/share/doc/libc6/x/y",
        "usr/share/man/man1/ls.1.gz",
        "usr/share/locale/de/LC_MESSAGES/a.mo",
        "usr/share/info/dir",
        "usr/share/zoneinfo/UTC",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "usr/share/doc/libfoo").symlink_to("libc6")
    bootstrap.prune_excluded(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if not p.is_dir() or p.is_symlink())
    assert left == ["usr/share/doc/libc6/copyright", "usr/share/zoneinfo/UTC"]
    assert sorted(os.listdir(tmp_path / "usr/share")) == ["doc", "info", "locale", "man", "zoneinfo"]


def sources(image: Path, text: str) -> None:
    (image / "etc/apt").mkdir(parents=True, exist_ok=True)
    (image / "etc/apt/sources.list").write_text(text)


def test_indexes_are_kept_per_sources_and_fresh_for_a_short_while(tmp_path: Path) -> None:
    cache, image, other = tmp_path / "apt-archives", tmp_path / "image", tmp_path / "other"
    text = "deb http://deb.debian.org/debian bookworm main\n"
    sources(image, text)
    sources(other, "deb http://deb.debian.org/debian trixie main\n")
    # a new base binds the folder its finished tree will use: same sources, same indexes
    assert chroot.sources_text_digest(text) == chroot.sources_digest(image)
    mine, theirs = (chroot.apt_lists(cache, chroot.sources_digest(t)) for t in (image, other))
    assert mine != theirs and mine.parent == theirs.parent == tmp_path / "apt-lists"
    assert not chroot.lists_fresh(cache, image)
    chroot.mark_lists_fresh(cache, image)
    assert chroot.lists_fresh(cache, image)
    assert not chroot.lists_fresh(cache, other)  # other sources: their indexes were not fetched
    (image / "etc/apt/sources.list.d").mkdir()
    (image / "etc/apt/sources.list.d/extra.list").write_text("deb http://example.org/x ./\n")
    assert not chroot.lists_fresh(cache, image)  # a source added since
    chroot.mark_lists_fresh(cache, image)
    stamp = chroot.apt_lists(cache, chroot.sources_digest(image)) / chroot.FRESH_STAMP
    old = time.time() - chroot.FRESH_SECONDS - 1
    os.utime(stamp, (old, old))
    assert not chroot.lists_fresh(cache, image)


def test_bootstrap_reads_every_source_of_the_image(tree: Sysroot) -> None:
    default = definitions.load_definition(tree, "default")
    argv = bootstrap.mmdebstrap_argv(default, Path("/t"))
    assert argv[-3:] == bootstrap.source_lines(default) and argv[-4] == "/t"
    assert not any(a.startswith("--dpkgopt=path-") for a in argv)  # excludes go through the setup hook
