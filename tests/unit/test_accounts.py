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
from kestrel.nodes import registry
from kestrel.sysroot import ServiceMode, Sysroot
from kestrel.users import accounts, rootaccess, userlist
from tests.conftest import REPO, Recorder, said

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


def run_script(tree: Sysroot, image_root: Path, name: str = "default",
               script: Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    env = {**os.environ, "KESTREL_ROOT": str(tree.root), "KESTREL_IMAGE_ROOT": str(image_root),
           "KESTREL_CONFIG_JSON": config.to_json(), "KESTREL_PYTHON": sys.executable, "KESTREL_IMAGE": name}
    return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_configure_script_gives_the_image_the_cluster_users(tree: Sysroot) -> None:
    img = image(tree)
    tree.path(accounts.USERS_PATH).write_text("alice:2000:/bin/bash:admin\nbob:2001:/bin/sh:user\n")
    proc = run_script(tree, img)
    assert proc.returncode == 0, proc.stderr
    assert (img / "etc/passwd").read_text() == (
        "root:x:0:0:root:/root:/bin/bash\n"
        "alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash\n"
        "bob:x:2001:2001:bob (cluster user):/home/bob:/bin/sh\n")
    assert (img / "etc/group").read_text() == "root:x:0:\nsudo:x:27:alice\nalice:x:2000:\nbob:x:2001:\n"
    assert (img / "etc/shadow").stat().st_mode & 0o777 == 0o640  # kept
    assert "alice:2000:/bin/bash:admin" in (img / "etc/kestrel/users").read_text()
    unit = (img / "etc/systemd/system/home.mount").read_text()
    assert f"What=10.10.0.1:{tree.path('/home')}\nWhere=/home\nType=nfs\n" in unit
    assert os.readlink(img / "etc/systemd/system/remote-fs.target.wants/home.mount") == "../home.mount"
    assert run_script(tree, img).stderr == ""  # nothing left to write
    # bob removed on the frontend: the image's own copy of the list says he was ours, so he goes.
    tree.path(accounts.USERS_PATH).write_text("alice:2000:/bin/bash:user\n")
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
    assert bad.returncode == 2 and bad.stderr.strip() == "kestrel-users: '../x' is not a valid image name " \
        "(a-z, 0-9, '_', '.', '-', at most 63)"


def test_home_mount_unit_names() -> None:
    assert userlist.unit_name_for_path("/home") == "home"
    assert userlist.unit_name_for_path("/export/cluster home/") == "export-cluster\\x20home"
    assert userlist.unit_name_for_path("/srv/.homes") == "srv-\\x2ehomes"


def test_known_hosts_lists_nodes_with_their_image_keys_and_never_for_the_frontend(tree: Sysroot) -> None:
    image(tree)
    tree.path("/etc/ssh").mkdir(parents=True)
    tree.path("/etc/ssh/ssh_host_ed25519_key.pub").write_text(KEY_F)
    nodes = [registry.Node("node01", "52:54:00:00:00:01", IPv4Address("10.10.0.101"), "default", "compute"),
             registry.Node("node02", "52:54:00:00:00:02", IPv4Address("10.10.0.102"), "other", "compute")]
    tree.path(registry.REGISTRY_PATH).write_text(registry.format_registry(nodes))
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    a, f = " ".join(KEY_A.split()[:2]), " ".join(KEY_F.split()[:2])
    assert accounts.known_hosts_body(tree, config) == (
        f"node01,node01.cluster.local,10.10.0.101 {a}\n"
        f"node*,*.cluster.local,10.10.0.*,!frontend,!frontend.cluster.local,!10.10.0.1 {a}\n"
        f"frontend,frontend.cluster.local,10.10.0.1 {f}\n")


def test_bad_input_exits_2_and_changes_nothing(tree: Sysroot) -> None:
    def files() -> dict[str, bytes]:
        # The lock file (and its folder) is created by any writer before it validates: not a change.
        return {str(p): p.read_bytes() for p in tree.root.rglob("*") if p.is_file() and p.name != "lock"}

    before = files()
    for args in (["add", "Bad;name"], ["add", "root"], ["add", "alice", "--uid", "10"], ["remove", "nobody"],
                 ["add", "alice", "--shell", "bash"]):
        result = CliRunner().invoke(users_command, ["--root", str(tree.root), *args], standalone_mode=False)
        assert result.exit_code != 0 or result.exception is not None
        assert getattr(result.exception, "exit_code", None) == 2, (args, result.exception)
    assert files() == before



@pytest.mark.parametrize("mode", list(ServiceMode))
def test_sshd_dropin_reloads_ssh_only_on_a_real_frontend(tree: Sysroot, mode: ServiceMode,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    frontend = Sysroot(tree.root, mode)
    frontend.path("/etc/ssh/sshd_config.d").mkdir(parents=True)
    systemctl = Recorder()
    monkeypatch.setattr(rootaccess, "runner", systemctl)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    with said() as lines:
        rootaccess.enforce(frontend, config)
    dropin = f"Wrote {frontend.sys(rootaccess.SSHD_DROPIN)}"
    if mode is ServiceMode.SYSTEMD:
        assert (lines, systemctl.ran) == ([dropin, "Reloaded ssh"], [["systemctl", "reload", "ssh"]])
    else:
        assert (lines, systemctl.ran) == ([dropin], [])
    with said() as lines:
        rootaccess.enforce(frontend, config)
    assert lines == [] and len(systemctl.ran) == (1 if mode is ServiceMode.SYSTEMD else 0)
