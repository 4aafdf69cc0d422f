"""The lab's servers for real, without an image (kestrel-lab up --servers builds the same, then boots nodes): a
switch host and two servers as namespaces with their own sshd, the lab's frontend namespace joined as server fe,
trusted and switched by kestrel-switch; a qemu node started on s2 by kestrel-vm start --server gets its lease from
the lab's dnsmasq across the switch and is registered by the lease hook; down leaves no namespace, device or
process of the lab."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from kestrel import runner
from kestrel.config import load_config
from kestrel.lab import cluster as lab
from kestrel.net import netns
from kestrel.nodes import registry
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import power
from tests.conftest import eventually, need_root, processes_naming, said
from tests.treestate import kestrel


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _ours(prefix: str) -> list[str]:
    spaces = [ns["name"] for ns in json.loads(runner.run(["ip", "-j", "netns", "list"]).stdout or "[]")]
    links = [link["ifname"] for link in json.loads(runner.run(["ip", "-j", "link"]).stdout)]
    return [n for n in spaces + links if n.startswith(prefix)]


def test_lab_servers_switch_a_remote_node_to_the_frontend_and_down_leaves_nothing(tmp_path: Path) -> None:
    need_root()
    root = Sysroot(tmp_path / "lab")
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    try:
        with said() as lines:
            config_path, _ = lab.up_frontend(root, prefix, None, lab.servers_section(prefix, 2, 1))
            config = load_config(config_path)
            lab.servers_up(root, config, prefix, 2)
        assert any(line.startswith("Switch up, MTU 1450: changed ") for line in lines), lines
        assert config.network.mtu == 1450 and [s.name for s in config.servers] == ["sw", "fe", "s1", "s2"]
        assert all(netns.exists(f"{prefix}{h}") for h in ("ul", "sw", "s1", "s2", "fe"))
        # an up again changes nothing on the switch
        with said() as lines:
            lab.servers_up(root, config, prefix, 2)
        assert "Switch up, MTU 1450: nothing changed" in lines, lines
        spec = vm_definitions.define_vm(root, config, "s2n01", server="s2", memory=256)
        assert power.start(root, config, spec)
        # iPXE's lease came from the lab's dnsmasq, across s2's bridge, the switch host and the frontend's bridge
        assert eventually(lambda: bool(registry.load_registry(root)), 120, 0.5), kestrel(
            "vm", root.root, "console", "s2n01"
        ).stdout[-800:]
        assert registry.find_node(registry.load_registry(root), "node01").mac == spec.mac
        rows = json.loads(kestrel("vm", root.root, "list", "--json").stdout)
        assert [(r["name"], r["server"], r["state"]) for r in rows] == [("s2n01", "s2", "running")]
    finally:
        with said() as lines:
            problems = lab.down(root)
        assert problems == []
    assert "Stopped VM s2n01 on s2" in lines, lines
    assert not _ours(prefix)
    assert not processes_naming(root.root)
