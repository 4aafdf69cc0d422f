"""Image versions: changes made through the overlay reach the new version only, and making the new version
changes no inode of the old one (nodes run it over NFS, where a changed ctime reads as changed data)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kestrel.images import cow
from tests.conftest import need_root


def test_new_version_gets_the_changes_and_the_old_one_keeps_its_bytes(tmp_path: Path) -> None:
    need_root()
    old = tmp_path / "v1"
    (old / "etc" / "conf.d").mkdir(parents=True)
    (old / "etc" / "passwd").write_text("root:x:0:0\n")
    (old / "etc" / "motd").write_text("hello\n")
    (old / "etc" / "conf.d" / "a").write_text("a\n")
    (old / "etc" / "conf.d" / "b").write_text("b\n")
    (old / "usr").mkdir()
    (old / "usr" / "big").write_bytes(b"x" * 4096)
    os.symlink("passwd", old / "etc" / "link")
    scratch = tmp_path / ".cow"
    with cow.overlay(old, scratch) as merged:
        with open(merged / "etc" / "passwd", "a") as f:  # an in-place append: the worst case
            f.write("alice:x:2000:2000\n")
        (merged / "etc" / "motd").unlink()
        subprocess.run(["rm", "-rf", str(merged / "etc" / "conf.d")], check=True)
        (merged / "etc" / "conf.d").mkdir()
        (merged / "etc" / "conf.d" / "c").write_text("c\n")
        (merged / "new").write_text("new\n")
        os.chmod(merged / "usr" / "big", 0o600)
    assert not os.path.ismount(scratch / "merged")
    new = tmp_path / "v2"
    before = {p: p.lstat() for p in old.rglob("*")}
    cow.materialize(old, scratch / "upper", new)

    assert (new / "etc" / "passwd").read_text() == "root:x:0:0\nalice:x:2000:2000\n"
    assert (old / "etc" / "passwd").read_text() == "root:x:0:0\n"
    assert not (new / "etc" / "motd").exists() and (old / "etc" / "motd").exists()
    assert sorted(p.name for p in (new / "etc" / "conf.d").iterdir()) == ["c"]
    assert sorted(p.name for p in (old / "etc" / "conf.d").iterdir()) == ["a", "b"]
    assert (new / "new").read_text() == "new\n" and not (old / "new").exists()
    assert (new / "usr" / "big").stat().st_mode & 0o777 == 0o600
    assert (old / "usr" / "big").stat().st_mode & 0o777 == 0o644
    assert os.readlink(new / "etc" / "link") == "passwd"
    # Nothing is shared: the old version's inodes keep their link counts and ctimes.
    old_inodes = {st.st_ino for st in before.values()}
    assert not old_inodes & {p.lstat().st_ino for p in new.rglob("*")}
    after = {p: p.lstat() for p in old.rglob("*")}
    assert {p: (st.st_nlink, st.st_ctime_ns) for p, st in after.items()} == {
        p: (st.st_nlink, st.st_ctime_ns) for p, st in before.items()
    }
    whiteouts = [p for p in new.rglob("*") if p.is_char_device()]
    assert whiteouts == []
