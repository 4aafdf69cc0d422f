"""sysroot: the hosts block keeps foreign text, atomic writes, plans and their descriptions."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.errors import InputError
from kestrel.plan import Action, Desired, apply_changes, describe_plan, plan_files
from kestrel.sysroot import Sysroot, atomic_write, read_block, replace_block

# Lines an admin may have in /etc/hosts: anything but our markers.
LINE_BREAKS = "\n"
foreign_line = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters=LINE_BREAKS), max_size=40
).filter(lambda s: s not in ("# BEGIN kestrel", "# END kestrel"))
foreign_text = st.lists(foreign_line, max_size=8).map(lambda lines: "".join(x + "\n" for x in lines))
body = st.lists(st.from_regex(r"10\.0\.0\.[0-9]{1,3}\tnode[0-9]{2}", fullmatch=True), max_size=5).map(
    lambda lines: "".join(x + "\n" for x in lines)
)


@given(before=foreign_text, after=foreign_text, old=body, new=body)
def test_text_outside_the_block_never_changes(before: str, after: str, old: str, new: str) -> None:
    original = before + "# BEGIN kestrel\n" + old + "# END kestrel\n" + after
    updated = replace_block(original, new)
    if new:
        assert updated == before + "# BEGIN kestrel\n" + new + "# END kestrel\n" + after
        assert read_block(updated) == new
    else:
        assert updated == before + after


@given(text=foreign_text, new=body.filter(bool))
def test_block_is_appended_once_and_is_idempotent(text: str, new: str) -> None:
    once = replace_block(text, new)
    assert once.startswith(text) if text.endswith("\n") or not text else once.endswith(text)
    assert replace_block(once, "") == text
    assert replace_block(once, new) == once
    assert once.count("# BEGIN kestrel") == 1


def test_newline_added_to_the_admins_last_line() -> None:
    """A file whose last line has no newline gets the block first: not one byte of the admin's text changes."""
    assert replace_block("127.0.0.1 localhost", "10.0.0.1\tfe\n") == (
        "# BEGIN kestrel\n10.0.0.1\tfe\n# END kestrel\n127.0.0.1 localhost"
    )
    assert replace_block("127.0.0.1 localhost\n", "10.0.0.1\tfe\n") == (
        "127.0.0.1 localhost\n# BEGIN kestrel\n10.0.0.1\tfe\n# END kestrel\n"
    )


def test_unterminated_block_is_an_error_naming_the_file() -> None:
    message = r"^/etc/hosts: '# BEGIN kestrel' without '# END kestrel'; fix the block by hand$"
    with pytest.raises(InputError, match=message):
        replace_block("# BEGIN kestrel\n1.2.3.4 x\n", "x\n", "/etc/hosts")


def test_atomic_write_replaces_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "f"
    atomic_write(target, b"one", 0o600)
    atomic_write(target, b"two", 0o640)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["f"]


def test_atomic_write_falls_back_in_place_on_ebusy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bind-mounted /etc/hosts refuses rename with EBUSY; simulated here (a bind mount needs root)."""
    target = tmp_path / "hosts"
    target.write_bytes(b"old contents that are longer\n")
    inode = target.stat().st_ino

    def busy(src: str, dst: str) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "replace", busy)
    atomic_write(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["hosts"]


def test_plan_changes_only_what_differs_and_collects_actions(tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    desired = [
        Desired("/etc/a.conf", b"a\n", on_change=("svc", Action.RELOAD)),
        Desired("/etc/b.conf", b"b\n", on_change=("svc", Action.RESTART)),
    ]
    plan = plan_files(root, desired)
    assert [c.path for c in plan.changes] == ["/etc/a.conf", "/etc/b.conf"]
    assert [(a.service, a.action) for a in plan.actions] == [("svc", Action.RESTART)]
    apply_changes(root, plan)
    assert plan_files(root, desired).is_empty
    (tmp_path / "etc" / "a.conf").write_text("edited by hand\n")
    again = plan_files(root, desired)
    assert [c.path for c in again.changes] == ["/etc/a.conf"]
    assert [(a.service, a.action) for a in again.actions] == [("svc", Action.RELOAD)]


def test_plan_removes_stale_owned_files_only(tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    folder = tmp_path / "srv" / "boot"
    folder.mkdir(parents=True)
    (folder / "old.ipxe").write_text("x")
    (folder / "keep.txt").write_text("admin's")
    plan = plan_files(root, [Desired("/srv/boot/new.ipxe", b"y")], owned=[("/srv/boot", "*.ipxe")])
    assert [(c.path, c.verb) for c in plan.changes] == [
        ("/srv/boot/new.ipxe", "Created"),
        ("/srv/boot/old.ipxe", "Removed"),
    ]


def test_describe_plan_with_diff_writes_nothing(tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "x").write_text("one\ntwo\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    plan = plan_files(root, [Desired("/etc/x", b"one\nthree\n", on_change=("dnsmasq", Action.RESTART))])
    text = describe_plan(root, plan, diff=True)
    assert text.splitlines() == [
        f"Would write {tmp_path}/etc/x",
        f"--- a{tmp_path}/etc/x",
        f"+++ b{tmp_path}/etc/x",
        "@@ -1,2 +1,2 @@",
        " one",
        "-two",
        "+three",
        f"Would skip restart of dnsmasq: not running under {tmp_path}",
    ]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "etc" / "x").read_text() == "one\ntwo\n"


def test_paths_stay_under_the_root(tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    assert root.path("/etc/hosts") == tmp_path / "etc" / "hosts"
    assert root.sys("/srv/kestrel") == f"{tmp_path}/srv/kestrel"
    with pytest.raises(Exception, match="not an absolute system path"):
        root.path("/etc/../../x")
