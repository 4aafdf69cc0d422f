"""A rebuild never deletes or unexports the root a running node booted: facts carry it, publish and exports keep it."""

from __future__ import annotations

import os
import subprocess

from kestrel.config import Config
from kestrel.frontend import desired
from kestrel.images import store
from kestrel.nodes import state as nodestate
from kestrel.nodes.state import Facts, NodeState, State
from kestrel.sysroot import Sysroot, atomic_write
from tests.conftest import said

MAC = "52:54:00:aa:00:01"


def test_facts_command_runs_here_and_parses() -> None:
    out = subprocess.run(["sh", "-c", nodestate.FACTS_COMMAND], capture_output=True, text=True, check=True).stdout
    facts = nodestate.parse_facts(out)
    assert facts.cpus == os.cpu_count()
    with open("/proc/meminfo") as f:
        assert facts.memory_mb == int(f.readline().split()[1]) // 1024
    assert facts.root is None  # this machine did not boot from NFS


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
    return {"name": name, "version": v, "root": root, "kernel": f"images/{name}/{v}/vmlinuz",
            "initrd": f"images/{name}/{v}/initrd.img", "built": f"2026-11-22T00:00:0{v[-1]}"}


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
    assert kept(tree) == ["v1", "v2", "v3"]
    assert "Kept default version v1: up nodes run on it (it goes once they are down)" in lines
    tree.path("/etc/kestrel/nodes").write_text(f"{MAC},set:img-default,set:grp-compute,10.10.0.11,node01\n")
    assert store.list_images(tree)[0]["used_by"] == {"v1": ["node01"]}
    set_node(tree, tree.sys(f"{store.versions_dir('default')}/v1"), up=False)
    store.publish(tree, version(tree, "default", "v4"))
    assert kept(tree) == ["v3", "v4"]  # the previous one stays for rollback, as always


def test_older_kept_versions_stay_exported_under_stable_ids(tree: Sysroot) -> None:
    store.publish(tree, version(tree, "default", "v1"))
    store.publish(tree, version(tree, "default", "v2"))
    current = store.published_images(tree)
    served = current + store.older_versions(tree, current)
    found = desired.exports(tree, Config(), served)
    assert [(e.pseudo, e.path) for e in found[2:]] == [
        ("/images/default/v2", tree.sys(f"{store.versions_dir('default')}/v2")),
        ("/images/default/v1", tree.sys(f"{store.versions_dir('default')}/v1"))]
    ids = {e.pseudo: e.fsid for e in found}
    # another image does not renumber the exports that running nodes hold handles of
    store.publish(tree, version(tree, "aaa", "v9"))
    current = store.published_images(tree)
    again = {e.pseudo: e.fsid for e in desired.exports(tree, Config(), current + store.older_versions(tree, current))}
    assert {k: again[k] for k in ids} == ids and len(set(again.values())) == len(again)
    assert all(1000 <= i < 65000 for k, i in again.items() if k.startswith("/images"))


def test_export_ids_never_collide() -> None:
    first = desired.export_id("default", "v1", set())
    assert desired.export_id("default", "v1", {first}) == first + 1 or first == 64999
    assert desired.export_id("default", "v1", set()) == first
