"""Each registered node's SSH host keys, served to it alone while it boots (the firewall module).

With the firewall module the exported image holds no host private key: the image script sshd_host-keys keeps them
on the frontend (KEYS_DIR/IMAGE). nginx serves them on boot.keys_port, one bundle per registered address
(BUNDLES_DIR/ADDRESS: the private keys of that node's image) and answers a request with the bundle named by the
request's source address; the firewall accepts that port only from the registered MAC + address pairs. So a node
gets its own image's keys, before its sshd starts (the image's kestrel-host-keys unit), and a machine that is not
a registered node gets nothing. A node that cannot fetch them (frontend down, not registered yet) starts sshd with
a throwaway key and gets them pushed over SSH later (kestrel.frontend.hostkeys).

Pure but for reading the keys and the frontend's /etc/group.
"""

from __future__ import annotations

import re

from kestrel.config import Config
from kestrel.frontend import firewall
from kestrel.nodes.registry import Node
from kestrel.plan import Desired
from kestrel.sysroot import Sysroot

KEYS_DIR = "/var/lib/kestrel/ssh"  # KEYS_DIR/IMAGE/ssh_host_*_key(.pub), made by the image script sshd_host-keys
BUNDLES_DIR = "/var/lib/kestrel/host-keys"  # BUNDLES_DIR/ADDRESS, served by nginx to ADDRESS
URL_PATH = "/host-keys"
NGINX_GROUP = "www-data"  # Debian's nginx workers read the bundles as this group on a real frontend

_NAME = re.compile(r"ssh_host_[a-z0-9]+_key")


def url(config: Config) -> str:
    return f"http://{config.network.ip}:{config.boot.keys_port}{URL_PATH}"


def private_keys(root: Sysroot, image: str) -> dict[str, bytes]:
    """IMAGE's host private keys by file name ({} before its first build)."""
    folder = root.path(f"{KEYS_DIR}/{image}")
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.glob("ssh_host_*_key")) if p.is_file()}


def bundle(keys: dict[str, bytes]) -> bytes:
    """One text the node's script splits: a key's file name alone on a line, then the key's lines. Only keys in
    OpenSSH's text form go in (a name line can never be one of their lines); the push delivers any other."""
    out = [b"# Kestrel: this node's SSH host keys; a line ssh_host_*_key starts each file\n"]
    for name, data in sorted(keys.items()):
        if _NAME.fullmatch(name) and _is_text_key(data):
            out.append(f"{name}\n".encode() + data)
    return b"".join(out)


def _is_text_key(data: bytes) -> bool:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = text.splitlines()
    return (
        text.endswith("\n")
        and len(lines) >= 3
        and lines[0].startswith("-----BEGIN ")
        and lines[-1].startswith("-----END ")
        and not any(_NAME.fullmatch(line) or line.startswith("#") for line in lines)
    )


def reader(root: Sysroot) -> tuple[int, int] | None:
    """Owner of the bundles: root and nginx's group on a real frontend; None (root only) where nginx runs as root
    (the lab's own) or the group is missing."""
    if not root.uses_systemd:
        return None
    for line in (root.read("/etc/group") or b"").decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == NGINX_GROUP and fields[2].isdigit():
            return 0, int(fields[2])
    return None


def desired_files(root: Sysroot, config: Config, nodes: list[Node]) -> list[Desired]:
    """A bundle per registered node whose image has keys (with the firewall module; none without)."""
    if not firewall.enabled(config):
        return []
    owner = reader(root)
    keys_of: dict[str, dict[str, bytes]] = {}
    out = []
    for node in nodes:
        keys = keys_of.setdefault(node.image, private_keys(root, node.image))
        if keys:
            out.append(
                Desired(
                    f"{BUNDLES_DIR}/{node.ip}", bundle(keys), mode=0o640 if owner else 0o600, owner=owner, secret=True
                )
            )
    return out
