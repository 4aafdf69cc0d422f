"""Cluster users on trees: the image configure script, known_hosts from image keys, bad input changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from click.testing import CliRunner

from kestrel.cli.users import command as users_command
from kestrel.config import load_config
from kestrel.frontend import services
from kestrel.nodes import registry
from kestrel.plan import describe_plan
from kestrel.sysroot import ServiceMode, Sysroot
from kestrel.users import homes, hosttrust, rootaccess, userkeys, userlist
from tests.conftest import REPO, Recorder, need_root, said
from tests.treestate import assert_unchanged, kestrel, tree_state

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr3kFf1a4b0Nq5U3CwQ9n4gq3D0u0Yk3b2l8m1f7Z0x root@image-a\n"
KEY_F = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPf1a4b0Nq5U3CwQ9n4gq3D0u0Yk3b2l8m1f7Z0xOr3k root@frontend\n"
SCRIPT = REPO / "phases" / "node" / "configure.d" / "core_users"


def image(tree: Sysroot, name: str = "default") -> Path:
    root = tree.path(f"/srv/kestrel/images/{name}")
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\nsudo:x:27:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc" / "shadow").chmod(0o640)
    (root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").write_text(KEY_A)
    return root


def run_script(
    tree: Sysroot, image_root: Path, name: str = "default", script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    env = {
        **os.environ,
        "KESTREL_ROOT": str(tree.root),
        "KESTREL_IMAGE_ROOT": str(image_root),
        "KESTREL_CONFIG_JSON": config.to_json(),
        "KESTREL_PYTHON": sys.executable,
        "KESTREL_IMAGE": name,
    }
    return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_configure_script_gives_the_image_the_cluster_users(tree: Sysroot) -> None:
    img = image(tree)
    tree.path(userlist.USERS_PATH).write_text("alice:2000:/bin/bash:admin\nbob:2001:/bin/sh:user\n")
    proc = run_script(tree, img)
    assert proc.returncode == 0, proc.stderr
    assert (img / "etc/passwd").read_text() == (
        "root:x:0:0:root:/root:/bin/bash\n"
        "alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash\n"
        "bob:x:2001:2001:bob (cluster user):/home/bob:/bin/sh\n"
    )
    assert (img / "etc/group").read_text() == "root:x:0:\nsudo:x:27:alice\nalice:x:2000:\nbob:x:2001:\n"
    assert (img / "etc/shadow").stat().st_mode & 0o777 == 0o640  # kept
    assert "alice:2000:/bin/bash:admin" in (img / "etc/kestrel/users").read_text()
    unit = (img / "etc/systemd/system/home.mount").read_text()
    assert f"What=10.10.0.1:{tree.path('/home')}\nWhere=/home\nType=nfs\n" in unit
    assert os.readlink(img / "etc/systemd/system/remote-fs.target.wants/home.mount") == "../home.mount"
    assert run_script(tree, img).stderr == ""  # nothing left to write
    # bob removed on the frontend: the image's own copy of the list says he was ours, so he goes.
    tree.path(userlist.USERS_PATH).write_text("alice:2000:/bin/bash:user\n")
    assert run_script(tree, img).returncode == 0
    assert "bob" not in (img / "etc/passwd").read_text()
    assert (img / "etc/group").read_text() == "root:x:0:\nsudo:x:27:\nalice:x:2000:\n"


def test_an_image_in_its_first_build_trusts_its_own_new_host_keys(tree: Sysroot) -> None:
    image(tree)
    staging = tree.path("/srv/kestrel/images/new.versions/.staging-1")
    shutil.copytree(tree.path("/srv/kestrel/images/default"), staging)
    (staging / "etc/ssh/ssh_host_ed25519_key.pub").write_text(KEY_F.replace("root@frontend", "new"))
    script = SCRIPT.with_name("sshd_known-hosts")
    proc = run_script(tree, staging, "new", script)
    assert proc.returncode == 0, proc.stderr
    new = " ".join(KEY_F.split()[:2])
    for known in (staging / "etc/ssh/ssh_known_hosts", tree.path("/etc/ssh/ssh_known_hosts")):
        text = known.read_text()
        assert f"node*,*.cluster.local,10.10.0.*,!frontend,!frontend.cluster.local,!10.10.0.1 {new}\n" in text
    bad = run_script(tree, staging, "../x", script)
    assert (
        bad.returncode == 2
        and bad.stderr.strip()
        == "kestrel-users: '../x' is not a valid image name (a-z, 0-9, '_', '.', '-', at most 63)"
    )


def test_home_mount_unit_names() -> None:
    assert userlist.unit_name_for_path("/home") == "home"
    assert userlist.unit_name_for_path("/export/cluster home/") == "export-cluster\\x20home"
    assert userlist.unit_name_for_path("/srv/.homes") == "srv-\\x2ehomes"


def test_known_hosts_lists_nodes_with_their_image_keys_and_never_for_the_frontend(tree: Sysroot) -> None:
    image(tree)
    tree.path("/etc/ssh").mkdir(parents=True)
    tree.path("/etc/ssh/ssh_host_ed25519_key.pub").write_text(KEY_F)
    nodes = [
        registry.Node("node01", "52:54:00:00:00:01", IPv4Address("10.10.0.101"), "default", "compute"),
        registry.Node("node02", "52:54:00:00:00:02", IPv4Address("10.10.0.102"), "other", "compute"),
    ]
    tree.path(registry.REGISTRY_PATH).write_text(registry.format_registry(nodes))
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    a, f = " ".join(KEY_A.split()[:2]), " ".join(KEY_F.split()[:2])
    assert hosttrust.known_hosts_body(tree, config) == (
        f"node01,node01.cluster.local,10.10.0.101 {a}\n"
        f"node*,*.cluster.local,10.10.0.*,!frontend,!frontend.cluster.local,!10.10.0.1 {a}\n"
        f"frontend,frontend.cluster.local,10.10.0.1 {f}\n"
    )


def test_bad_input_exits_2_and_changes_nothing(tree: Sysroot) -> None:
    def files() -> dict[str, bytes]:
        # The lock file (and its folder) is created by any writer before it validates: not a change.
        return {str(p): p.read_bytes() for p in tree.root.rglob("*") if p.is_file() and p.name != "lock"}

    before = files()
    for args in (
        ["add", "Bad;name"],
        ["add", "root"],
        ["add", "alice", "--uid", "10"],
        ["remove", "nobody"],
        ["add", "alice", "--shell", "bash"],
    ):
        result = CliRunner().invoke(users_command, ["--root", str(tree.root), *args], standalone_mode=False)
        assert result.exit_code != 0 or result.exception is not None
        assert getattr(result.exception, "exit_code", None) == 2, (args, result.exception)
    assert files() == before


def users_cli(tree: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    return kestrel("users", tree.root, *args)


def frontend(tree: Sysroot) -> None:
    """A frontend tree with system accounts, a skeleton, sshd's drop-in folder, an image and a running node."""
    tree.path("/etc/skel").mkdir(parents=True)
    tree.path("/etc/skel/.profile").write_text("umask 022\n")
    tree.path("/etc/ssh/sshd_config.d").mkdir(parents=True)
    tree.path("/etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    tree.path("/etc/group").write_text("root:x:0:\nsudo:x:27:\n")
    image(tree)
    node = registry.Node("node01", "52:54:00:00:00:01", IPv4Address("10.10.0.101"), "default", "compute")
    tree.path(registry.REGISTRY_PATH).write_text(registry.format_registry([node]))


def test_add_dry_run_says_what_it_would_do_and_writes_nothing(tree: Sysroot) -> None:
    frontend(tree)
    before = tree_state(tree.root)
    proc = users_cli(tree, "add", "alice", "--admin", "--dry-run", "--diff")
    assert proc.returncode == 0, proc.stderr
    assert_unchanged(before, tree.root)
    r, img = tree.root, tree.path("/srv/kestrel/images/default")
    ssh = f"{r}/home/alice/.ssh"
    assert [line for line in proc.stdout.splitlines() if line.startswith("Would")] == [
        "Would add cluster user alice (uid 2000)",
        # the push to node01 that follows needs the frontend's root key: made first (no image build made it yet)
        f"Would create {r}/root/.ssh/",
        f"Would run ssh-keygen -q -t ed25519 -N '' -C root@kestrel-frontend -f {r}/root/.ssh/id_ed25519",
        f"Would create {r}/home/alice/",
        f"Would create {r}/home/alice/.profile",
        f"Would create {ssh}/",
        f"Would run ssh-keygen -q -t ed25519 -N '' -C alice@lab -f {ssh}/id_ed25519",
        f"Would run chown 2000:2000 {ssh}/id_ed25519 {ssh}/id_ed25519.pub",
        f"Would run install -m 600 -o 2000 -g 2000 {ssh}/id_ed25519.pub {ssh}/authorized_keys",
        f"Would write {r}/etc/passwd",
        f"Would write {r}/etc/group",
        f"Would create {r}/etc/shadow",
        f"Would create {r}/etc/ssh/ssh_known_hosts",
        f"Would create {r}/etc/kestrel/users",
        f"Would create {r}/etc/ssh/sshd_config.d/kestrel-root.conf",
        f"Would skip reload of ssh: not running under {r}",
        f"Would write {img}/etc/passwd",
        f"Would write {img}/etc/group",
        f"Would write {img}/etc/shadow",
        f"Would create {img}/etc/ssh/ssh_known_hosts",
        f"Would create {img}/etc/kestrel/users",
        f"Would create {img}/etc/systemd/system/home.mount",
        f"Would create {img}/etc/systemd/system/remote-fs.target.wants/",
        f"Would link {img}/etc/systemd/system/remote-fs.target.wants/home.mount -> ../home.mount",
        "Would update the cluster users on 1 running node: node01",
    ]
    lines = proc.stdout.splitlines()
    for diff in (
        [
            f"--- a{r}/etc/passwd",
            f"+++ b{r}/etc/passwd",
            " root:x:0:0:root:/root:/bin/bash",
            "+alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash",
        ],
        [f"+++ b{r}/home/alice/.profile", "+umask 022"],
        [f"+++ b{img}/etc/group", "-sudo:x:27:", "+sudo:x:27:alice", "+alice:x:2000:"],
        ["+    PermitRootLogin no"],
    ):
        assert all(line in lines for line in diff), diff
    # without --diff: the same lines without the diffs; with --no-push no node is named, and no root key is made
    quiet = users_cli(tree, "add", "alice", "--admin", "--dry-run", "--no-push")
    assert quiet.stdout.splitlines() == [
        line
        for line in proc.stdout.splitlines()
        if line.startswith("Would") and "running node" not in line and "/root/.ssh" not in line
    ]
    assert_unchanged(before, tree.root)


def test_remove_dry_run_says_what_it_would_do_and_writes_nothing(tree: Sysroot) -> None:
    frontend(tree)
    tree.path(userlist.USERS_PATH).write_text("alice:2000:/bin/bash:user\n")
    with tree.path("/etc/passwd").open("a") as f:
        f.write("alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash\n")
    with tree.path("/etc/group").open("a") as f:
        f.write("alice:x:2000:\n")
    tree.path("/home/alice/.ssh").mkdir(parents=True)
    tree.path("/home/alice/.ssh/authorized_keys").write_text(KEY_F)
    before = tree_state(tree.root)
    proc = users_cli(tree, "remove", "alice", "--delete-home", "--dry-run", "--diff", "--no-push")
    assert proc.returncode == 0, proc.stderr
    assert_unchanged(before, tree.root)
    r = tree.root
    said = proc.stdout.splitlines()
    assert [line for line in said if line.startswith("Would") and "/images/" not in line] == [
        "Would remove cluster user alice",
        f"Would write {r}/etc/passwd",
        f"Would write {r}/etc/group",
        f"Would create {r}/etc/ssh/ssh_known_hosts",
        f"Would write {r}/etc/kestrel/users",
        f"Would create {r}/etc/ssh/sshd_config.d/kestrel-root.conf",
        f"Would remove {r}/home/alice",
        f"Would skip reload of ssh: not running under {r}",
    ]
    assert "-alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash" in said
    assert "-alice:2000:/bin/bash:user" in said
    keep = users_cli(tree, "remove", "alice", "--dry-run")  # the home stays unless --delete-home
    assert keep.returncode == 0 and f"Would remove {r}/home/alice" not in keep.stdout
    missing = users_cli(tree, "remove", "bob", "--dry-run")
    assert (missing.returncode, missing.stderr) == (
        2,
        "kestrel-users: bob is not a cluster user (see kestrel-users list)\n",
    )
    assert_unchanged(before, tree.root)


def did_what_it_said(tree: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    """ARGS with --dry-run, then for real: each "Would VERB PATH" is a "VERBed PATH", in the same order
    (commands say what they made in their own words, between those lines)."""
    planned = users_cli(tree, *args, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    done = users_cli(tree, *args)
    assert done.returncode == 0, done.stderr
    verbs = {"create": "Created", "write": "Wrote", "link": "Linked", "remove": "Removed"}
    expected = [
        f"{verbs[w.split()[1]]} {w.split(' ', 2)[2]}"
        for w in planned.stdout.splitlines()
        if w.split()[1] in verbs and w.split()[2].startswith("/")
    ]
    said = iter(done.stderr.splitlines())
    assert all(line in said for line in expected), (expected, done.stderr)  # in order
    return done


def test_sync_does_what_its_dry_run_said_then_has_nothing_to_do(tree: Sysroot) -> None:
    frontend(tree)
    tree.path(userlist.USERS_PATH).write_text("alice:2000:/bin/bash:admin\n")
    done = did_what_it_said(tree, "sync", "--no-push")
    assert f"Skipped reload of ssh: not running under {tree.root}" in done.stderr
    again = users_cli(tree, "sync", "--dry-run", "--no-push")
    assert (again.returncode, again.stdout) == (0, "Nothing to do\n")


def test_add_and_remove_do_what_their_dry_runs_said(tree: Sysroot) -> None:
    need_root()  # the home and keys are given to the user's uid
    frontend(tree)
    did_what_it_said(tree, "add", "alice", "--no-push")
    home = tree.path("/home/alice")
    assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (2000, 0o700)
    keys = home / ".ssh"
    assert (keys / "authorized_keys").read_text() == (keys / "id_ed25519.pub").read_text()
    assert {(p.name, p.stat().st_uid, p.stat().st_mode & 0o777) for p in keys.iterdir()} == {
        ("authorized_keys", 2000, 0o600),
        ("id_ed25519", 2000, 0o600),
        ("id_ed25519.pub", 2000, 0o644),
    }
    again = users_cli(tree, "sync", "--dry-run", "--no-push")
    assert (again.returncode, again.stdout) == (0, "Nothing to do\n")
    did_what_it_said(tree, "remove", "alice", "--delete-home", "--no-push")
    assert not home.exists()


@pytest.mark.parametrize("mode", list(ServiceMode))
def test_sshd_dropin_reloads_ssh_only_on_a_real_frontend(
    tree: Sysroot, mode: ServiceMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    frontend = Sysroot(tree.root, mode)
    frontend.path("/etc/ssh/sshd_config.d").mkdir(parents=True)
    systemctl = Recorder()
    monkeypatch.setattr(services, "runner", systemctl)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    plan = rootaccess.plan_dropin(frontend, config)
    would = describe_plan(frontend, plan, diff=False).splitlines()[-1]
    if mode is ServiceMode.SYSTEMD:
        assert would == f"Would reload ssh ({rootaccess.SSHD_DROPIN} changed)"
    else:
        assert would == f"Would skip reload of ssh: not running under {tree.root}"
    with said() as lines:
        services.apply(frontend, plan)
    dropin = f"Created {frontend.sys(rootaccess.SSHD_DROPIN)}"
    reason = f"({rootaccess.SSHD_DROPIN} changed)"
    if mode is ServiceMode.SYSTEMD:
        assert (lines, systemctl.ran) == ([dropin, f"Reloaded ssh {reason}"], [["systemctl", "reload", "ssh"]])
    else:
        assert (lines, systemctl.ran) == ([dropin, f"Skipped reload of ssh: not running under {tree.root}"], [])
    assert rootaccess.plan_dropin(frontend, config).is_empty
    with said() as lines:
        services.apply(frontend, rootaccess.plan_dropin(frontend, config))
    assert lines == [] and len(systemctl.ran) == (1 if mode is ServiceMode.SYSTEMD else 0)


def test_with_the_firewall_module_no_user_private_key_is_in_the_exported_home(tree: Sysroot) -> None:
    """The key pair lives in /var/lib/kestrel/user-keys/NAME (delivered to nodes after boot); the home keeps
    authorized_keys. A user made before the module is turned on has the pair moved out on the next reconfigure."""
    need_root()
    frontend(tree)
    did_what_it_said(tree, "add", "bob", "--no-push")  # before the module: in the home
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    config_path.write_text(config_path.read_text().replace("modules: [core,", "modules: [firewall, core,"))
    config = load_config(config_path)
    did_what_it_said(tree, "add", "alice", "--no-push")
    services.apply(tree, homes.plan_keys_out_of_homes(tree, config))
    for name, uid in (("alice", 2001), ("bob", 2000)):
        ssh_dir, keys = tree.path(f"/home/{name}/.ssh"), tree.path(f"{userkeys.USER_KEYS_DIR}/{name}")
        assert [p.name for p in ssh_dir.iterdir()] == ["authorized_keys"]
        assert (ssh_dir / "authorized_keys").read_text() == (keys / "id_ed25519.pub").read_text()
        assert {(p.name, p.stat().st_uid, p.stat().st_mode & 0o777) for p in [keys, *keys.iterdir()]} == {
            (name, uid, 0o700),
            ("id_ed25519", uid, 0o600),
            ("id_ed25519.pub", uid, 0o644),
        }
        assert homes.private_key(tree, config, name) == keys / "id_ed25519"
    assert homes.plan_keys_out_of_homes(tree, config).steps == []
