"""Regression tests for the crash-recovery defects of issue 15, each named after it: a rerun heals what a killed
writer left, and files Kestrel shares keep every byte, link and owner that is not its own."""

from __future__ import annotations

import os
from pathlib import Path

from kestrel.frontend import services
from kestrel.plan import Action, Plan, ServiceAction
from kestrel.sysroot import Sysroot
from tests.treestate import kestrel

LEASES = "".join(f"1795000000 52:54:00:dd:00:{i:02x} 10.10.0.{150 + i} * *\n" for i in range(1, 4))


def ok(tree: Sysroot, program: str, *args: str) -> str:
    proc = kestrel(program, tree.root, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def register(tree: Sysroot, leases: Path) -> str:
    return ok(tree, "nodes", "--register", "--no-verify", "--leases", str(leases))


def test_register_rerun_after_kill_between_registry_and_hosts_returns_early(tree: Sysroot, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(LEASES)
    register(tree, leases)
    hosts = tree.path("/etc/hosts")
    fresh = hosts.read_bytes()
    # What a kill after the registry's rename leaves: the registry new, the hosts files old.
    hosts.unlink()
    tree.path("/etc/kestrel/hosts").unlink()
    register(tree, leases)
    assert hosts.read_bytes() == fresh
    assert b"node03" in tree.path("/etc/kestrel/hosts").read_bytes()


def test_lost_reload_is_replayed(tree: Sysroot) -> None:
    """A writer killed after its files but before its reload owes it: the next writer, with nothing to change,
    carries it out."""
    owed = ServiceAction("dnsmasq", Action.RELOAD, "/etc/kestrel/nodes changed")
    tree.path(services.PENDING_PATH).parent.mkdir(parents=True)
    tree.path(services.PENDING_PATH).write_bytes(services._dump([owed]))
    assert services.load_pending(tree) == [owed]
    out = ok(tree, "nodes", "add", "--mac", "52:54:00:dd:01:01")
    assert "reload of dnsmasq" in out  # 'Skipped reload of dnsmasq: not running under ROOT' on a scratch tree
    assert not tree.path(services.PENDING_PATH).exists()
    services.apply(tree, Plan())
    assert not tree.path(services.PENDING_PATH).exists()


def test_kestrel_tmp_files_left_by_killed_writers_are_never_removed(tree: Sysroot) -> None:
    ok(tree, "nodes", "add", "--mac", "52:54:00:dd:01:01")
    stale = [tree.path("/etc/kestrel/.nodes.abcd1234.kestrel-tmp"), tree.path("/etc/.hosts.x_y9.kestrel-tmp")]
    for path in stale:
        path.write_text("half a file")
    admin = tree.path("/etc/kestrel/.notes.kestrel-tmp")  # not a temp file of a file Kestrel writes
    admin.write_text("mine")
    out = ok(tree, "nodes", "add", "--mac", "52:54:00:dd:01:02")
    assert not any(p.exists() for p in stale), out
    assert admin.read_text() == "mine"


def test_symlinked_etc_hosts_is_replaced_by_a_plain_file(tree: Sysroot) -> None:
    real = tree.path("/etc/hosts.local")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_text("127.0.0.1 localhost\n")
    os.chown(real, 1234, 2345)
    real.chmod(0o640)
    tree.path("/etc/hosts").symlink_to("hosts.local")
    ok(tree, "nodes", "add", "--mac", "52:54:00:dd:01:01")
    assert tree.path("/etc/hosts").is_symlink() and os.readlink(tree.path("/etc/hosts")) == "hosts.local"
    st = real.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 2345, 0o640)
    assert real.read_text().startswith("127.0.0.1 localhost\n# BEGIN kestrel\n")


def test_newline_added_to_the_admins_last_line_of_etc_hosts(tree: Sysroot) -> None:
    hosts = tree.path("/etc/hosts")
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_bytes(b"127.0.0.1 localhost\n10.0.0.9 printer")
    ok(tree, "nodes", "add", "--mac", "52:54:00:dd:01:01")
    text = hosts.read_bytes()
    assert text.endswith(b"# END kestrel\n127.0.0.1 localhost\n10.0.0.9 printer")
    ok(tree, "nodes", "remove", "node01")
    text = hosts.read_bytes()
    assert text.startswith(b"# BEGIN kestrel\n") and text.endswith(
        b"# END kestrel\n127.0.0.1 localhost\n10.0.0.9 printer"
    )
