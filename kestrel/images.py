"""Node images as the frontend serves them: the published versions and their boot files.

Layout (system paths, under --root):
  /srv/kestrel/images/NAME                 symlink to the current version's root, NAME.versions/VERSION
  /srv/kestrel/{http,tftp}/images/NAME/VERSION/{vmlinuz,initrd.img}   boot files of each kept version
  /var/lib/kestrel/images/NAME.json        manifest of the current version (what the frontend reads)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kestrel import names
from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

IMAGES_DIR = "/srv/kestrel/images"
MANIFESTS_DIR = "/var/lib/kestrel/images"


@dataclass(frozen=True)
class PublishedImage:
    name: str
    version: str
    root: str  # system path of the version's root filesystem (what NFS exports)
    kernel: str | None  # relative to the http and tftp roots; None: not network-bootable
    initrd: str | None
    cmdline: str = ""

    @property
    def bootable(self) -> bool:
        return bool(self.kernel and self.initrd)


def manifest_path(name: str) -> str:
    return f"{MANIFESTS_DIR}/{names.check_name(name, 'image name')}.json"


def published_images(root: Sysroot) -> list[PublishedImage]:
    """The current version of every published image, sorted by name."""
    folder = root.path(MANIFESTS_DIR)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            found.append(PublishedImage(
                name=names.check_name(data["name"], "image name"),
                version=str(data["version"]),
                root=data["root"],
                kernel=data.get("kernel"),
                initrd=data.get("initrd"),
                cmdline=data.get("cmdline", ""),
            ))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a valid image manifest: {e}") from None
    return found
