"""What `kestrel-images list` shows: each published image, its kept versions, sizes, and the up nodes on each."""

from __future__ import annotations

from typing import Any

from kestrel.images.definitions import defined_images
from kestrel.images.store import current, kept_versions, published_images
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot
from kestrel.vocabulary import iso_utc


def list_images(root: Sysroot) -> list[dict[str, Any]]:
    """Rows for `kestrel-images list`: name, version, root, size, built, modules, bootable, versions, and
    used_by: the up nodes on each version (from their last visit)."""
    names = {n.mac: n.name for n in registry.load_registry(root)}
    on_root = {
        path: [names.get(mac, mac) for mac in macs]
        for path, macs in nodestate.macs_by_root(nodestate.load_states(root)).items()
    }
    rows = []
    for image in published_images(root):
        data = current(root, image.name) or {}
        kept = kept_versions(root, image.name)
        rows.append(
            {
                "name": image.name,
                "version": image.version,
                "root": root.sys(image.root),
                "size": data.get("size"),
                "built": iso_utc(data.get("built")),
                "modules": data.get("modules", []),
                "bootable": image.bootable,
                "versions": [v["version"] for v in kept],
                "used_by": {v["version"]: on_root[root.sys(v["root"])] for v in kept if root.sys(v["root"]) in on_root},
            }
        )
    return rows


def list_versions(root: Sysroot) -> list[dict[str, Any]]:
    """Rows for `kestrel-images list --all`: every kept version of every image (state current or kept), then each
    defined image not built yet (state 'not built', with its definition): name, version, state, size, built,
    modules, nodes (the up nodes on it), logs, root."""
    names = {n.mac: n.name for n in registry.load_registry(root)}
    on_root = nodestate.macs_by_root(nodestate.load_states(root))
    rows = []
    built = set()
    for image in published_images(root):
        built.add(image.name)
        for v in reversed(kept_versions(root, image.name)):
            path = root.sys(v["root"])
            rows.append(
                {
                    "name": image.name,
                    "version": v["version"],
                    "state": "current" if v["version"] == image.version else "kept",
                    "size": v.get("size"),
                    "built": iso_utc(v.get("built")),
                    "modules": v.get("modules", []),
                    "nodes": [names.get(mac, mac) for mac in on_root.get(path, [])],
                    "logs": root.sys(v["logs"]) if v.get("logs") else None,
                    "root": path,
                }
            )
    for name, definition in defined_images(root).items():
        if name not in built:
            rows.append(
                {
                    "name": name,
                    "version": None,
                    "state": "not built",
                    "size": None,
                    "built": None,
                    "modules": [],
                    "nodes": [],
                    "logs": None,
                    "root": None,
                    "definition": str(definition),
                }
            )
    return rows


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)
