"""The lab's frontend for real, without an image: a qemu node's iPXE gets a lease from the lab's dnsmasq, is
registered by the lease hook, and fetches its boot script from nginx; `down` leaves nothing behind."""

from __future__ import annotations

import secrets
from pathlib import Path

from kestrel import supervisor
from kestrel.config import load_config
from kestrel.lab import cluster as lab
from kestrel.net import netns
from kestrel.nodes import registry
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import qemu
from tests.conftest import eventually, need_root, said
from tests.treestate import dry_run


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_ipxe_lease_registration_and_boot_script(tmp_path: Path) -> None:
    need_root()
    root = Sysroot(tmp_path / "lab")
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    with said() as lines:
        _up_and_boot(root, prefix)
    assert f"Removed network namespace {prefix}fe" in lines and "Stopped VM pxe1" in lines
    assert not netns.exists(f"{prefix}fe")


def _up_and_boot(root: Sysroot, prefix: str) -> None:
    try:
        config_path, _ = lab.up_frontend(root, prefix)
        config = load_config(config_path)
        assert config.network.netns == f"{prefix}fe" and netns.exists(f"{prefix}fe")
        _dry_runs(root, prefix)
        spec = vm_definitions.define_vm(root, config, "pxe1", memory=256)
        qemu.start_vm(root, spec)
        access = root.path("/var/log/kestrel/nginx-access.log")
        assert eventually(lambda: "GET /boot.ipxe " in _text(access), 120, 0.5), _text(qemu.console_path(root, "pxe1"))
        # The lease hook runs beside the boot: the registration may land just after the script's fetch.
        assert eventually(lambda: bool(registry.load_registry(root)), 30, 0.5)
        node = registry.find_node(registry.load_registry(root), "node01")
        assert node.mac == spec.mac and str(node.ip) in _text(access)
        console = qemu.console_path(root, "pxe1")
        assert eventually(lambda: "No image is published yet" in _text(console), 60, 0.5), _text(console)
        # The IPv6 router advertisement reached iPXE: no 13 s wait for autoconfiguration.
        assert "RTR-ADVERT" in _text(root.path("/var/log/kestrel/dnsmasq.log"))
    finally:
        problems = lab.down(root)
        assert problems == []


def _dry_runs(root: Sysroot, prefix: str) -> None:
    """With the network, dnsmasq and nginx up: what up would still do, what down would do; neither writes."""
    ns, r = f"{prefix}fe", root.root
    busy = ("var/log/kestrel",)  # dnsmasq and nginx log meanwhile
    up = dry_run("lab", r, "up", "--dry-run", "--nodes", "1", busy=busy)
    started = ("Would start registrar", "Would start dnsmasq", "Would start nginx", "Would create network")
    assert not any(line.startswith(started) for line in up)
    assert up[:2] == ["Would build image default: kestrel-images build default (its --dry-run says how)", up[1]] and up[
        1
    ].startswith("Would start nfs-ganesha: ")
    assert f"Would run ip -n {ns} tuntap add dev kv-node01 mode tap" in up
    records = {name: supervisor.find(root, name) for name in ("registrar", "dnsmasq", "nginx")}
    pids = {name: record.pid for name, record in records.items() if record is not None}
    assert dry_run("lab", r, "down", "--dry-run", busy=busy) == [
        f"Would stop nginx (pid {pids['nginx']})",
        f"Would stop dnsmasq (pid {pids['dnsmasq']})",
        f"Would stop registrar (pid {pids['registrar']})",
        f"Would delete network namespace {ns} (and stop what still runs in it)",
        f"Would remove {r}/run/kestrel/lab.json",
    ]
    assert netns.exists(ns) and all(supervisor.find(root, name) for name in pids)
