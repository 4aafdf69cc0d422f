"""Regression tests for what issue 15 found silently accepted, each named after it: an unknown module, --image
naming no image, a dhcp_range widened over static addresses, a misnamed template override, a script of a module
that is off (explain names the line that enables it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kestrel.images import cow
from kestrel.sysroot import Sysroot
from tests.treestate import kestrel
from tests.unit.test_hardening_inputs import refused

CONFIG = "/etc/kestrel/kestrel.yaml"


def ok(tree: Sysroot, program: str, *args: str) -> str:
    proc = kestrel(program, tree.root, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def edit_config(tree: Sysroot, old: str, new: str) -> None:
    path = tree.path(CONFIG)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_unknown_module_name_is_silently_accepted(tree: Sysroot) -> None:
    edit_config(tree, "modules: [core, nfsroot, sshd, openmpi]", "modules: [core, nfsroot, sshd, openmpi, slurmm]")
    line = refused(tree, "reconfigure", "--frontend", names=f"{tree.path(CONFIG)}:")
    known = "core, firewall, gateway, mpich, nfsroot, openmpi, slurm, sshd, web"
    assert f"modules: unknown module 'slurmm' (known: {known})" in line


def test_module_of_an_admin_script_is_known(tree: Sysroot) -> None:
    script = tree.path("/etc/kestrel/node/configure.d/demo_hello")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n")
    edit_config(tree, "modules: [core, nfsroot, sshd, openmpi]", "modules: [core, demo]")
    ok(tree, "reconfigure", "--frontend", "--dry-run")


def test_image_nosuch_on_nodes_add_and_set(tree: Sysroot) -> None:
    refused(tree, "nodes", "add", "--mac", "52:54:00:cc:00:01", "--image", "nosuch", names="--image: no image 'nosuch'")
    ok(tree, "nodes", "add", "--mac", "52:54:00:cc:00:01", "--image", "default")
    refused(tree, "nodes", "set", "node01", "--image", "nosuch", names="--image: no image 'nosuch' is defined")


def test_dhcp_range_widened_over_static_addresses(tree: Sysroot) -> None:
    ok(tree, "reconfigure", "--frontend")
    ok(tree, "nodes", "add", "--mac", "52:54:00:cc:00:01")  # 10.10.0.2: outside the range, static
    edit_config(tree, "dhcp_range: [10.10.0.100, 10.10.0.199]", "dhcp_range: [10.10.0.2, 10.10.0.199]")
    line = refused(tree, "reconfigure", "--frontend", names=f"{tree.path(CONFIG)}:12: network.dhcp_range:")
    assert "covers the static addresses of registered nodes node01 (10.10.0.2)" in line
    # A node registered from its lease keeps its address inside the range: no overlap, the range may move.
    leases = tree.path("/tmp-leases")
    leases.write_text("1795000000 52:54:00:cc:00:02 10.10.0.150 * *\n")
    edit_config(tree, "dhcp_range: [10.10.0.2, 10.10.0.199]", "dhcp_range: [10.10.0.100, 10.10.0.199]")
    ok(tree, "nodes", "--register", "--no-verify", "--leases", str(leases))
    edit_config(tree, "dhcp_range: [10.10.0.100, 10.10.0.199]", "dhcp_range: [10.10.0.140, 10.10.0.199]")
    ok(tree, "reconfigure", "--frontend")


def test_misnamed_template_override_file(tree: Sysroot) -> None:
    misnamed = tree.path("/etc/kestrel/templates/dnsmasq.cnf")
    misnamed.parent.mkdir(parents=True)
    misnamed.write_text("# mine\n")
    tree.path("/etc/kestrel/templates/hosts-block").write_text("{{ header }}\n")  # a real override: no warning
    out = ok(tree, "reconfigure", "--frontend")
    warnings = [line for line in out.splitlines() if "matches no shipped template" in line]
    assert warnings == [f"Warning: {misnamed} matches no shipped template, so nothing uses it (misnamed?)"]


def test_admin_script_whose_module_prefix_is_not_enabled(tree: Sysroot) -> None:
    script = tree.path("/etc/kestrel/node/configure.d/demo_hello")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n")
    proc = kestrel("images", tree.root, "explain", "default")
    assert proc.returncode == 0, proc.stderr
    hint = (
        f"Module demo is off; to enable it, set in {tree.path(CONFIG)}: modules: [core, nfsroot, sshd, openmpi, demo]"
    )
    assert hint in proc.stderr.splitlines()
    rows = json.loads(kestrel("images", tree.root, "explain", "default", "--json").stdout)
    (row,) = [r for r in rows if r["script"] == "demo_hello"]
    assert row["status"] == "module off"
    assert row["enable"] == f"{tree.path(CONFIG)}: modules: [core, nfsroot, sshd, openmpi, demo]"


def test_users_add_on_a_fresh_frontend_writes_everything_then_exits_1(tree: Sysroot) -> None:
    """No root key yet (only the first image build made it) and a registered node to push to: the key is made
    first, then the account; the push's failure is a warning (the node gets the users from its image)."""
    ok(tree, "nodes", "add", "--mac", "52:54:00:cc:00:01")
    out = ok(tree, "users", "add", "alice")
    key = tree.path("/root/.ssh/id_ed25519")
    assert f"Created {key}" in out.splitlines()
    assert key.exists() and key.with_suffix(".pub").exists()
    assert (key.parent.stat().st_mode & 0o777) == 0o700
    assert tree.path("/home/alice/.ssh/authorized_keys").exists()
    assert "alice:2000" in tree.path("/etc/kestrel/users").read_text()


def test_users_remove_deletes_the_home_directory_by_default(tree: Sysroot) -> None:
    ok(tree, "users", "add", "alice", "--no-push")
    ok(tree, "users", "remove", "alice", "--no-push")
    assert tree.path("/home/alice/.ssh/id_ed25519").exists()
    ok(tree, "users", "add", "alice", "--no-push")  # the kept home is reused, keys and all
    ok(tree, "users", "remove", "alice", "--delete-home", "--no-push")
    assert not tree.path("/home/alice").exists()


def test_reconfigure_all_with_nothing_changed_published_a_new_version(tmp_path: Path) -> None:
    """What the configure phase left in the overlay's upper layer is compared with the version it ran on: a file
    written again with the same bytes (a newer time) is no change, so nothing is published; any other is one."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for tree in (lower, upper):
        (tree / "etc").mkdir(parents=True)
        (tree / "etc/hostname-mark").write_text("same\n")
    os.utime(upper / "etc/hostname-mark", (1, 1))
    (lower / "etc/kept").write_text("not in upper: untouched\n")
    assert cow.changes(lower, upper) == []
    (upper / "etc/hostname-mark").write_text("other\n")
    (upper / "etc/new").write_text("x")
    assert cow.changes(lower, upper) == ["etc/hostname-mark", "etc/new"]
    (upper / "etc/hostname-mark").write_text("same\n")
    (upper / "etc/hostname-mark").chmod(0o600)
    assert cow.changes(lower, upper) == ["etc/hostname-mark", "etc/new"]  # a mode is a change too
