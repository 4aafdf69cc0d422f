"""The firewall module's host key bundles: one per registered node, its image's private keys, served to it alone."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address
from pathlib import Path

from kestrel.config import load_config
from kestrel.frontend import keybundles
from kestrel.frontend.desired import _context
from kestrel.nodes.registry import Node
from kestrel.plan import plan_files, plan_lines
from kestrel.sysroot import ServiceMode, Sysroot
from kestrel.templates import render
from tests.unit.test_firewall import enable

A = Node("node01", "52:54:00:aa:00:01", IPv4Address("10.10.0.21"), "default", "compute")
B = Node("node02", "52:54:00:aa:00:02", IPv4Address("10.10.0.22"), "other", "compute")


def make_keys(tree: Sysroot, image: str, tmp_path: Path) -> dict[str, bytes]:
    folder = tree.path(f"{keybundles.KEYS_DIR}/{image}")
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("ed25519", "ecdsa"):
        key = folder / f"ssh_host_{kind}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    return keybundles.private_keys(tree, image)


def test_a_bundle_per_registered_node_whose_image_has_keys(tree: Sysroot, tmp_path: Path) -> None:
    keys = make_keys(tree, "default", tmp_path)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    assert keybundles.desired_files(tree, config, [A, B]) == []  # no firewall module: the keys are in the image
    enable(tree)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    (bundle,) = keybundles.desired_files(tree, config, [A, B])  # B's image has no keys yet
    assert bundle.path == "/var/lib/kestrel/host-keys/10.10.0.21"
    assert bundle.mode == 0o600 and bundle.owner is None and bundle.secret  # the lab's nginx reads as root
    text = bundle.content.decode()
    for name, data in keys.items():
        assert f"\n{name}\n{data.decode()}" in text
    assert keybundles.url(config) == "http://10.10.0.1:8079/host-keys"


def test_a_real_frontend_lets_nginx_group_read_them(tree: Sysroot, tmp_path: Path) -> None:
    make_keys(tree, "default", tmp_path)
    enable(tree)
    tree.path("/etc/group").write_text("root:x:0:\nwww-data:x:33:\n")
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    (bundle,) = keybundles.desired_files(Sysroot(tree.root, ServiceMode.SYSTEMD), config, [A])
    assert (bundle.mode, bundle.owner) == (0o640, (0, 33))


def test_only_openssh_text_keys_go_in() -> None:
    good = b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA/b+c\n-----END OPENSSH PRIVATE KEY-----\n"
    sneaky = b"-----BEGIN OPENSSH PRIVATE KEY-----\nssh_host_evil_key\n-----END OPENSSH PRIVATE KEY-----\n"
    out = keybundles.bundle(
        {"ssh_host_ed25519_key": good, "ssh_host_rsa_key": b"\x00binary", "ssh_host_x_key": sneaky, "../k": good}
    ).decode()
    assert out.count("ssh_host_") == 2  # the header's mention and the one good key
    assert "ssh_host_ed25519_key\n" + good.decode() in out


def test_a_diff_never_shows_a_bundle(tree: Sysroot, tmp_path: Path) -> None:
    make_keys(tree, "default", tmp_path)
    enable(tree)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    plan = plan_files(tree, keybundles.desired_files(tree, config, [A]))
    lines = plan_lines(tree, plan, diff=True)
    assert lines == [f"Would create {tree.root}/var/lib/kestrel/host-keys/10.10.0.21 (secret: no diff shown)"]


def test_nginx_serves_the_keys_port_only_with_the_module(tree: Sysroot) -> None:
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    assert ":8079" not in render(tree, "nginx-site.conf", **_context(tree, config, []))
    enable(tree)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    site = render(tree, "nginx-site.conf", **_context(tree, config, []))
    assert "listen 10.10.0.1:8079;" in site
    assert f"root {tree.root}/var/lib/kestrel/host-keys;" in site
    assert "try_files /$remote_addr =404;" in site
