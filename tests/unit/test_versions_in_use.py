"""A rebuild never deletes or unexports the root a running node booted: facts carry it, publish and exports keep it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kestrel.config import Config
from kestrel.frontend import desired
from kestrel.images import listing, store
from kestrel.images.store import PublishedImage
from kestrel.nodes import state as nodestate
from kestrel.nodes.state import Facts, NodeState, State
from kestrel.sysroot import Sysroot, atomic_write
from tests.conftest import said
from tests.treestate import kestrel

MAC = "52:54:00:aa:00:01"


def run_facts(tmp_path: Path, meminfo: str, cmdline: str) -> Facts:
    """FACTS_COMMAND as a node runs it, on one CPU and with /proc/meminfo and /proc/cmdline the test writes."""
    (tmp_path / "meminfo").write_text(meminfo)
    (tmp_path / "cmdline").write_text(cmdline)
    command = nodestate.FACTS_COMMAND
    for name in ("meminfo", "cmdline"):
        assert f"/proc/{name}" in command
        command = command.replace(f"/proc/{name}", str(tmp_path / name))
    one_cpu = str(min(os.sched_getaffinity(0)))  # nproc counts the CPUs the process may run on
    out = subprocess.run(
        ["taskset", "--cpu-list", one_cpu, "sh", "-c", command], capture_output=True, text=True, check=True
    ).stdout
    return nodestate.parse_facts(out)


MEMINFO = "MemTotal:        4039312 kB\nMemFree:          123456 kB\nMemAvailable:    3000000 kB\n"


def test_facts_command_reads_what_a_node_booted(tmp_path: Path) -> None:
    image = PublishedImage("default", "7", "/srv/kestrel/images/default.versions/7", "k", "i", cmdline="quiet")
    cmdline = "BOOT_IMAGE=vmlinuz initrd=initrd.img " + desired.kernel_cmdline(Sysroot("/"), Config(), image) + "\n"
    assert run_facts(tmp_path, MEMINFO, cmdline) == Facts(1, 3944, "/srv/kestrel/images/default.versions/7")


def test_facts_command_on_a_machine_not_booted_from_nfs(tmp_path: Path) -> None:
    cmdline = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=0f3c ro quiet\n"
    assert run_facts(tmp_path, MEMINFO, cmdline) == Facts(1, 3944, None)


def test_facts_name_the_booted_root() -> None:
    out = "cpus=4\nmemory_kb=2048000\nroot=/srv/kestrel/images/default.versions/v1\nhome=nfs 10.10.0.1:/home\n"
    assert nodestate.parse_facts(out) == Facts(4, 2000, "/srv/kestrel/images/default.versions/v1")
    assert nodestate.parse_facts("cpus=1\nmemory_kb=1024\nroot=\n").root is None


def test_only_up_nodes_pin_their_root() -> None:
    states = nodestate.mark({}, MAC, True, 1795000000, Facts(2, 1000, "/a"))
    states = nodestate.mark(states, "52:54:00:aa:00:02", True, 1795000000, Facts(2, 1000, "/b"))
    assert nodestate.macs_by_root(states) == {"/a": [MAC], "/b": ["52:54:00:aa:00:02"]}
    assert nodestate.parse_states(nodestate.format_states(states).decode())[MAC].root == "/a"
    states = nodestate.mark(states, "52:54:00:aa:00:02", False, 1795000100)
    assert nodestate.macs_by_root(states) == {"/a": [MAC]}


def version(tree: Sysroot, name: str, v: str) -> dict[str, object]:
    root = f"{store.versions_dir(name)}/{v}"
    tree.path(root).mkdir(parents=True)
    return {
        "name": name,
        "version": v,
        "root": root,
        "kernel": f"images/{name}/{v}/vmlinuz",
        "initrd": f"images/{name}/{v}/initrd.img",
        "built": f"2026-11-22T00:00:0{v[-1]}",
    }


def set_node(tree: Sysroot, root: str | None, up: bool = True) -> None:
    states = {MAC: NodeState(State.UP if up else State.DOWN, 1795000000, 1, 1000, root)}
    atomic_write(tree.path(nodestate.STATE_PATH), nodestate.format_states(states))


def kept(tree: Sysroot) -> list[str]:
    return [str(v["version"]) for v in store.kept_versions(tree, "default")]


def test_publish_keeps_the_version_an_up_node_runs_until_it_is_down(tree: Sysroot) -> None:
    store.publish(tree, version(tree, "default", "v1"))
    set_node(tree, tree.sys(f"{store.versions_dir('default')}/v1"))
    with said() as lines:
        store.publish(tree, version(tree, "default", "v2"))
        store.publish(tree, version(tree, "default", "v3"))
        store.publish(tree, version(tree, "default", "v4"))
    assert kept(tree) == ["v1", "v2", "v3", "v4"]  # images.keep is 3, and v1 runs a node
    assert "Kept default version v1: up nodes run on it (it goes once they are down)" in lines
    tree.path("/etc/kestrel/nodes").write_text(f"{MAC},set:img-default,set:grp-compute,10.10.0.11,node01\n")
    assert listing.list_images(tree)[0]["used_by"] == {"v1": ["node01"]}
    set_node(tree, tree.sys(f"{store.versions_dir('default')}/v1"), up=False)
    store.publish(tree, version(tree, "default", "v5"))
    assert kept(tree) == ["v3", "v4", "v5"]  # the newest three: two to roll back to


@pytest.mark.parametrize(("keep", "left"), [(1, ["v4"]), (2, ["v3", "v4"]), (3, ["v2", "v3", "v4"])])
def test_images_keep_is_the_number_of_versions_kept(tree: Sysroot, keep: int, left: list[str]) -> None:
    for v in ("v1", "v2", "v3", "v4"):
        store.publish(tree, version(tree, "default", v), keep)
    assert kept(tree) == left


def test_older_kept_versions_stay_exported_under_stable_ids(tree: Sysroot) -> None:
    store.publish(tree, version(tree, "default", "v1"))
    store.publish(tree, version(tree, "default", "v2"))
    current = store.published_images(tree)
    served = current + store.older_versions(tree, current)
    found = desired.exports(tree, Config(), served)
    assert [(e.pseudo, e.path) for e in found[2:]] == [
        ("/images/default/v2", tree.sys(f"{store.versions_dir('default')}/v2")),
        ("/images/default/v1", tree.sys(f"{store.versions_dir('default')}/v1")),
    ]
    ids = {e.pseudo: e.fsid for e in found}
    # another image does not renumber the exports that running nodes hold handles of
    store.publish(tree, version(tree, "aaa", "v9"))
    current = store.published_images(tree)
    again = {e.pseudo: e.fsid for e in desired.exports(tree, Config(), current + store.older_versions(tree, current))}
    assert {k: again[k] for k in ids} == ids and len(set(again.values())) == len(again)
    assert all(1000 <= i < 65000 for k, i in again.items() if k.startswith("/images"))


def test_export_ids_never_collide() -> None:
    first = desired.export_id("default", "v1", set())
    # stable, also across Kestrel versions: NFS file handles carry it, a renumbering breaks running nodes' mounts
    assert first == desired.export_id("default", "v1", set()) == 64640
    assert desired.export_id("default", "v1", {first}) == first + 1
    # every id from FIRST to the top of the range (64999) is taken: the probe wraps around to the bottom
    taken_to_the_top = set(range(first, 65000))
    assert desired.export_id("default", "v1", taken_to_the_top) == 1000
    # ... and goes on from there, past the ids taken at the bottom, to the first free one
    assert desired.export_id("default", "v1", taken_to_the_top | {1000, 1001, 1002}) == 1003
    # only the id just below FIRST is free: a full turn finds it
    assert desired.export_id("default", "v1", set(range(1000, 65000)) - {first - 1}) == first - 1


def test_images_remove_default_deleted_every_version_while_a_node_was_up_on_it(tree: Sysroot) -> None:
    store.publish(tree, version(tree, "default", "v1"))
    store.publish(tree, version(tree, "default", "v2"))
    set_node(tree, tree.sys(f"{store.versions_dir('default')}/v1"))
    tree.path("/etc/kestrel/nodes").write_text(f"{MAC},set:img-default,set:grp-compute,10.10.0.11,node01\n")
    refused = kestrel("images", tree.root, "remove", "default")
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        "kestrel-images: image 'default' is the root of up nodes node01 (v1): removing it pulls their root from "
        "under them; power them off (or move them to another image) first, or give --force"
    ]
    assert kept(tree) == ["v1", "v2"]
    forced = kestrel("images", tree.root, "remove", "default", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Warning: Nodes lose their root: node01 (v1) run on default, removed with --force" in forced.stderr
    assert not tree.path(store.versions_dir("default")).exists()
