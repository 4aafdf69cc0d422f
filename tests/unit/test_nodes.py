"""Node operations in process: lease-event rules, mark_state for other modules, a crash leaves files old or new."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kestrel import sysroot
from kestrel.config import load_config
from kestrel.frontend import node_changes, registration
from kestrel.nodes import forgotten, leasequeue, registry
from kestrel.nodes import state as nodestate
from kestrel.nodes.registry import Node, load_registry
from kestrel.nodes.state import Facts, State, States, load_states
from kestrel.sysroot import Sysroot
from tests.conftest import said, write_config


def config_path(tree: Sysroot) -> Path:
    return tree.path("/etc/kestrel/kestrel.yaml")


def event(tree: Sysroot, action: str, mac: str, ip: str) -> list[str]:
    path = config_path(tree)
    with said() as lines:
        registration.lease_event(tree, load_config(path), action, mac, ip)
    return lines


def state_of(tree: Sysroot, mac: str) -> State | None:
    s = load_states(tree).get(mac)
    return s.state if s else None


def test_old_for_a_known_mac_writes_nothing(tree: Sysroot) -> None:
    event(tree, "add", "52:54:00:bb:00:01", "10.10.0.150")
    assert event(tree, "old", "52:54:00:bb:00:01", "10.10.0.150") == []


def test_del_for_an_old_dynamic_address_keeps_the_node_up(tree: Sysroot) -> None:
    """With a static pool a node moves off its dynamic lease: the `del` of that lease is not the node leaving."""
    text = config_path(tree).read_text().replace("# static_pool:", "static_pool:")
    write_config(tree, text)
    event(tree, "add", "52:54:00:bb:00:01", "10.10.0.150")
    [node] = load_registry(tree)
    assert str(node.ip) == "10.10.0.10"
    event(tree, "del", "52:54:00:bb:00:01", "10.10.0.150")
    assert state_of(tree, node.mac) is State.UP
    event(tree, "del", "52:54:00:bb:00:01", "10.10.0.10")
    assert state_of(tree, node.mac) is State.DOWN


def test_without_auto_register_unknown_macs_are_ignored(tree: Sysroot) -> None:
    write_config(tree, config_path(tree).read_text().replace("auto_register: true", "auto_register: false"))
    assert event(tree, "add", "52:54:00:bb:00:01", "10.10.0.150") == []
    assert load_registry(tree) == []
    assert not tree.path("/etc/kestrel/nodes").exists()


def test_a_removed_node_comes_back_only_when_it_asks_again(tree: Sysroot) -> None:
    """dnsmasq still holds a removed node's lease and reports it as `old` in the reload after the removal: that
    must not register it again; neither may an event queued before the removal. A later request does."""
    mac, ip = "52:54:00:bb:00:01", "10.10.0.150"
    event(tree, "add", mac, ip)
    [node] = load_registry(tree)
    node_changes.remove(tree, load_config(config_path(tree)), [node.name])
    removed = forgotten.load_forgotten(tree)[mac]

    def replay(action: str, when: int) -> None:
        registration.lease_events(tree, load_config(config_path(tree)), [leasequeue.parse_event(action, mac, ip, when)])

    replay("old", removed + forgotten.GRACE)
    replay("add", removed - 1)
    assert load_registry(tree) == []
    replay("old", removed + forgotten.GRACE + 1)  # it asked for its lease again: alive, registered like a new one
    assert [n.mac for n in load_registry(tree)] == [mac]
    assert forgotten.load_forgotten(tree) == {}


def test_mark_state_records_facts_and_hostfiles_follow(tree: Sysroot) -> None:
    path = config_path(tree)
    config = load_config(path)
    node_changes.add(tree, config, "52:54:00:bb:00:01", ip="10.10.0.5")
    with said() as lines:
        node_changes.mark_state(tree, config, "node01", True, Facts(cpus=8, memory_mb=2000))
    assert lines == [
        f"Wrote {tree.sys('/var/lib/kestrel/nodes.json')}",
        *(f"Wrote {tree.sys('/etc/kestrel/hostfiles/' + f)}" for f in ("openmpi", "mpich", "slurm", "hosts")),
    ]
    assert tree.path("/etc/kestrel/hostfiles/openmpi").read_text().endswith("\nnode01 slots=8\n")
    node_changes.mark_states(tree, config, {"node01": (False, None)})
    assert load_states(tree)["52:54:00:bb:00:01"].cpus == 8
    assert "node01" not in tree.path("/etc/kestrel/hostfiles/mpich").read_text()


def test_a_crash_at_any_write_leaves_each_file_old_or_new(tree: Sysroot, monkeypatch: pytest.MonkeyPatch) -> None:
    path = config_path(tree)
    config = load_config(path)

    def join(mac: str) -> node_changes.Change:
        """Register MAC (if new) and mark it up at a fixed time: the same change can be replayed."""

        def change(known: list[Node], states: States) -> tuple[list[Node], States]:
            if all(n.mac != mac for n in known):
                known = registry.add_node(known, config, mac=mac)
            return known, nodestate.mark(states, mac, True, 1795000000)

        return change

    node_changes.change_nodes(tree, config, join("52:54:00:bb:00:01"))
    old = snapshot(tree.root)
    plan = node_changes.change_nodes(tree, config, join("52:54:00:bb:00:02"))
    new = snapshot(tree.root)
    assert len(plan.changes) == 8  # registry, state, both hosts files, four hostfiles
    real_replace = os.replace
    for crash_at in range(len(plan.changes) + 1):  # the first rename is the record of the owed reload
        restore(tree.root, old)

        def crashing_replace(src: str, dst: str, count: list[int] = [0], crash_at: int = crash_at) -> None:  # noqa: B006
            if count[0] == crash_at:
                raise KeyboardInterrupt("power cut between the write and the rename")
            count[0] += 1
            real_replace(src, dst)

        monkeypatch.setattr(sysroot.os, "replace", crashing_replace)
        with pytest.raises(KeyboardInterrupt):
            node_changes.change_nodes(tree, config, join("52:54:00:bb:00:02"))
        monkeypatch.setattr(sysroot.os, "replace", real_replace)
        now = snapshot(tree.root)
        assert sorted(now) == sorted(old), "a temporary file was left behind"
        for name, data in now.items():
            assert data in (old[name], new[name]), f"{name} is neither old nor new after a crash at write {crash_at}"
        assert now != new
        node_changes.change_nodes(tree, config, join("52:54:00:bb:00:02"))
        assert snapshot(tree.root) == new, "the next change converges"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("lock", "pending-actions.json")  # the owed reload: its own test
    }


def restore(root: Path, files: dict[str, bytes]) -> None:
    for p in root.rglob("*"):
        if p.is_file() and p.name != "lock" and str(p.relative_to(root)) not in files:
            p.unlink()
    for name, data in files.items():
        (root / name).write_bytes(data)
