"""The cluster's known_hosts trust list: nodes' host keys come from their images, never from a first connection."""

from __future__ import annotations

import contextlib
from pathlib import Path

from kestrel import names
from kestrel.config import Config
from kestrel.errors import KestrelError
from kestrel.images.store import IMAGES_DIR
from kestrel.nodes import knownhosts, registry
from kestrel.sysroot import Sysroot


def image_roots(root: Sysroot) -> dict[str, Path]:
    """image name -> its current root: ROOT/srv/kestrel/images/NAME (the published symlink or a folder)."""
    folder = root.path(IMAGES_DIR)
    if not folder.is_dir():
        return {}
    return {
        e.name: e
        for e in sorted(folder.iterdir())
        if e.is_dir() and not e.name.endswith(".versions") and _is_name(e.name)
    }


def image_host_keys(root: Sysroot) -> dict[str, list[knownhosts.HostKey]]:
    """image name -> public host keys found in ROOT/srv/kestrel/images/NAME/etc/ssh/ssh_host_*_key.pub."""
    found: dict[str, list[knownhosts.HostKey]] = {}
    for name, path in image_roots(root).items():
        keys = host_keys_in(path / "etc" / "ssh")
        if keys:
            found[name] = keys
    return found


def host_keys_in(folder: Path) -> list[knownhosts.HostKey]:
    keys = []
    for pub in sorted(folder.glob("ssh_host_*_key.pub")):
        try:
            keys.append(knownhosts.parse_public_key(pub.read_text(), str(pub)))
        except (ValueError, OSError) as e:
            raise KestrelError(str(e)) from None
    return keys


def _is_name(text: str) -> bool:
    try:
        names.check_name(text)
    except ValueError:
        return False
    return True


def known_hosts_body(root: Sysroot, config: Config, keys: dict[str, list[knownhosts.HostKey]] | None = None) -> str:
    """Lines for every registered node (name, FQDN, IP) with its image's keys, then one pattern line per
    image key for nodes not registered yet, which excludes the frontend's names: a node key can never
    pass for the frontend. The frontend's own keys are listed for its names."""
    domain = config.cluster.domain
    front = config.cluster.frontend_name
    keys = image_host_keys(root) if keys is None else keys
    entries: list[tuple[list[str], knownhosts.HostKey]] = []
    for node in registry.load_registry(root):
        for key in keys.get(node.image, []):
            entries.append(([node.name, f"{node.name}.{domain}", str(node.ip)], key))
    not_front = [f"!{front}", f"!{front}.{domain}", f"!{config.network.ip}"]
    pattern = [
        knownhosts.name_pattern(config.nodes.name_pattern),
        f"*.{domain}",
        knownhosts.ip_pattern(config.network.network),
        *not_front,
    ]
    for image in sorted(keys):
        for key in keys[image]:
            entries.append((pattern, key))
    for pub in sorted(root.path("/etc/ssh").glob("ssh_host_*_key.pub")):
        with contextlib.suppress(ValueError, OSError):
            entries.append(
                (
                    [front, f"{front}.{domain}", str(config.network.ip)],
                    knownhosts.parse_public_key(pub.read_text(), str(pub)),
                )
            )
    return knownhosts.render(entries)
