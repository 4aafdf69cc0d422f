"""Published node images: versions on disk, manifests, atomic switch, rollback, removal.

Layout (system paths, under --root):
  /srv/kestrel/images/NAME                 symlink to the current version's root, NAME.versions/VERSION
  /srv/kestrel/images/NAME.versions/VERSION          the root of each kept version (.staging-* while built)
  /srv/kestrel/{http,tftp}/images/NAME/VERSION/{vmlinuz,initrd.img}   boot files of each kept version
  /var/lib/kestrel/images/NAME.json        manifest of the current version (what the frontend reads)
  /var/lib/kestrel/images/NAME.versions/VERSION.json   manifest of every kept version (for rollback)
  /var/log/kestrel/images/NAME/VERSION/PHASE.log     the build logs of each kept version (they go with it)

The manifest contract read by the frontend: {name, version, root (system path of the version's rootfs,
what NFS exports), kernel, initrd (paths relative to the http AND tftp roots, null when the image has no
kernel), cmdline}. Extra keys, for listings only: built, modules, size, definition, base, kernel_version.
Publishing writes the version's manifest, switches the symlink, then replaces NAME.json in one rename:
a reader sees the old version or the new one, never a mix. The newest versions are kept (images.keep, default
KEEP), and so is every version an up node booted (nodes.json, learnt over SSH): a rebuild never deletes a
running node's root.
Publishing, rollback and removal are plans (plan_*: pure given the disk), carried out under the lock; a dry run
prints them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kestrel import names, runner
from kestrel.errors import InputError, KestrelError
from kestrel.images.definitions import check_image_name
from kestrel.inputfile import read_input
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.plan import FileChange, Link, Plan, RemoveTree, Step, apply_changes, plan_removal
from kestrel.sysroot import LOG_DIR, Sysroot

logger = logging.getLogger(__name__)

IMAGES_DIR = "/srv/kestrel/images"
MANIFESTS_DIR = "/var/lib/kestrel/images"
BOOT_DIRS = ("/srv/kestrel/http", "/srv/kestrel/tftp")
KEEP = 3  # versions kept of each image by default (images.keep)


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


def _parse_manifest(path: Path, data: dict[str, Any]) -> PublishedImage:
    try:
        kernel, initrd = data.get("kernel"), data.get("initrd")
        return PublishedImage(
            name=names.check_name(data["name"], "image name"),
            # Every field reaches NFS exports, ganesha blocks and boot scripts: the config's grammar holds here too.
            version=names.check_name(data["version"], "image version"),
            root=names.check_abs_path(data["root"]),
            kernel=None if kernel is None else names.check_relative_path(kernel),
            initrd=None if initrd is None else names.check_relative_path(initrd),
            cmdline=names.check_cmdline(data.get("cmdline", "")),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a valid image manifest: {e}") from None


def read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(read_input(path))
    except ValueError as e:
        raise InputError(f"{path}: not a valid image manifest: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a valid image manifest: not a JSON object")
    _parse_manifest(path, data)
    return data


def older_versions(root: Sysroot, images: list[PublishedImage]) -> list[PublishedImage]:
    """The kept versions of IMAGES other than the current ones. NFS exports them too: a node that booted an
    older version keeps its root until that version is removed."""
    return [
        _parse_manifest(root.path(version_manifest_path(image.name, data["version"])), data)
        for image in images
        for data in kept_versions(root, image.name)
        if data["version"] != image.version
    ]


def published_images(root: Sysroot) -> list[PublishedImage]:
    """The current version of every published image, sorted by name."""
    folder = root.path(MANIFESTS_DIR)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        data = read_manifest(path)
        if data is not None:
            found.append(_parse_manifest(path, data))
    return found


# -- versions on disk -------------------------------------------------------------------------------------


def versions_dir(name: str) -> str:
    return f"{IMAGES_DIR}/{check_image_name(name)}.versions"


def version_manifest_path(name: str, version: str) -> str:
    return f"{MANIFESTS_DIR}/{check_image_name(name)}.versions/{version}.json"


def log_dir(name: str, version: str | None = None) -> str:
    """The build logs of VERSION of NAME (bootstrap, apt and one a phase), or of every version of NAME."""
    folder = f"{LOG_DIR}/images/{check_image_name(name)}"
    return folder if version is None else f"{folder}/{names.check_name(version, 'image version')}"


def boot_dir(boot_root: str, name: str, version: str) -> str:
    return f"{boot_root}/images/{name}/{version}"


def current(root: Sysroot, name: str) -> dict[str, Any] | None:
    return read_manifest(root.path(manifest_path(check_image_name(name))))


def kept_versions(root: Sysroot, name: str) -> list[dict[str, Any]]:
    """Manifests of every kept version whose root exists, oldest first."""
    folder = root.path(f"{MANIFESTS_DIR}/{check_image_name(name)}.versions")
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = read_manifest(path)
        if data and root.path(data["root"]).is_dir():
            found.append(data)
    return sorted(found, key=lambda d: str(d.get("built", d["version"])))


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def plan_publish(root: Sysroot, manifest: dict[str, Any], keep: int = KEEP) -> tuple[Plan, list[str]]:
    """Make MANIFEST's version current: its version manifest, the link switch, then NAME.json (in that order, so
    NAME.json never names a version whose link or manifest is missing); then the versions no longer kept go.
    Returns the plan and the older versions it keeps because up nodes run on them."""
    name, version = manifest["name"], manifest["version"]
    before = current(root, name)
    text = manifest_bytes(manifest)
    plan = Plan()
    plan.add(
        FileChange(version_manifest_path(name, version), root.read(version_manifest_path(name, version)), text),
        *_switch(root, name, version, text),
    )
    protect = {version} | ({before["version"]} if before and keep >= 2 else set())
    prune, pinned = plan_prune(root, name, protect, keep)
    plan.merge(prune)
    return plan, pinned


def publish(root: Sysroot, manifest: dict[str, Any], keep: int = KEEP) -> None:
    """Carry out plan_publish under the lock."""
    name = manifest["name"]
    with root.lock():
        plan, pinned = plan_publish(root, manifest, keep)
        for version in pinned:
            logger.info(f"Kept {name} version {version}: up nodes run on it (it goes once they are down)")
        apply_changes(root, plan)


def plan_prune(root: Sysroot, name: str, keep: set[str], count: int = KEEP) -> tuple[Plan, list[str]]:
    """The removal of NAME's kept versions beyond the newest COUNT (images.keep; the versions of KEEP, the new and
    the current one, always stay), but those up nodes run on (nodes.json); returns the plan and those pinned
    versions."""
    in_use = nodestate.macs_by_root(nodestate.load_states(root))
    plan, pinned = Plan(), []
    versions = kept_versions(root, name)  # oldest first
    others = [v for v in versions if v["version"] not in keep]
    room = max(0, count - len(keep))
    for old in others[: max(0, len(others) - room)]:
        if root.sys(old["root"]) in in_use:
            pinned.append(old["version"])
        else:
            plan.merge(plan_remove_version(root, name, old["version"]))
    return plan, pinned


def _switch(root: Sysroot, name: str, version: str, manifest_text: bytes) -> list[Step]:
    """The link NAME -> NAME.versions/VERSION switched in one rename, then NAME.json replaced in one rename."""
    return [
        Link(f"{IMAGES_DIR}/{name}", f"{name}.versions/{version}"),
        FileChange(manifest_path(name), root.read(manifest_path(name)), manifest_text),
    ]


def rollback_target(root: Sysroot, name: str) -> dict[str, Any]:
    """The manifest of the newest kept version older than the current one: what a rollback makes current."""
    now = current(root, name)
    if now is None:
        raise InputError(f"image '{name}' is not published")
    older = [
        v
        for v in kept_versions(root, name)
        if str(v.get("built", v["version"])) < str(now.get("built", now["version"]))
    ]
    if not older:
        raise KestrelError(f"image '{name}' has no older version to roll back to (current: {now['version']})")
    return older[-1]


def plan_rollback(root: Sysroot, name: str) -> Plan:
    """Make rollback_target current again."""
    target = rollback_target(root, name)
    return Plan(_switch(root, name, target["version"], manifest_bytes(target)))


def plan_remove_version(root: Sysroot, name: str, version: str) -> Plan:
    """Unpublish VERSION: its tree (tens of thousands of files, deleted in the background), boot files, manifest."""
    plan = Plan()
    tree = f"{versions_dir(name)}/{version}"
    if root.path(tree).is_dir():
        plan.add(RemoveTree(tree, background=True))
    plan.add(
        *_existing(root, [*(boot_dir(boot_root, name, version) for boot_root in BOOT_DIRS), log_dir(name, version)])
    )
    plan.merge(plan_removal(root, version_manifest_path(name, version)))
    return plan


def nodes_on(root: Sysroot, name: str) -> list[str]:
    """The up nodes that run on a version of NAME (their root is that version's, nodes.json), as 'NODE (VERSION)'."""
    in_use = nodestate.macs_by_root(nodestate.load_states(root))
    node_names = {n.mac: n.name for n in registry.load_registry(root)}
    versions = {v["version"]: v["root"] for v in kept_versions(root, name)}
    now = current(root, name)
    if now is not None:
        versions[now["version"]] = now["root"]
    return [
        f"{node_names.get(mac, mac)} ({version})"
        for version, path in sorted(versions.items())
        for mac in in_use.get(root.sys(path), [])
    ]


def plan_remove_image(root: Sysroot, name: str, force: bool = False) -> Plan:
    """Every version, boot file and manifest of NAME (the frontend stops serving it on its next plan). Refused
    while up nodes run on any version of it, unless FORCE (they lose their root then, and are named)."""
    if current(root, name) is None and not root.path(versions_dir(name)).exists():
        raise InputError(f"image '{name}' does not exist")
    users = nodes_on(root, name)
    if users and not force:
        raise KestrelError(
            f"image '{name}' is the root of up nodes {', '.join(users)}: removing it pulls their root from under "
            "them; power them off (or move them to another image) first, or give --force"
        )
    if users:
        logger.warning(f"Nodes lose their root: {', '.join(users)} run on {name}, removed with --force")
    plan = plan_removal(root, manifest_path(name))
    plan.add(
        *_existing(
            root,
            [
                f"{IMAGES_DIR}/{name}",
                versions_dir(name),
                f"{MANIFESTS_DIR}/{name}.versions",
                *(f"{boot_root}/images/{name}" for boot_root in BOOT_DIRS),
                log_dir(name),
            ],
        )
    )
    return plan


def apply_locked(root: Sysroot, plan_it: Callable[[], Plan]) -> Plan:
    """PLAN_IT() planned and carried out under the lock (nothing changes between the two); returns the plan."""
    with root.lock():
        plan = plan_it()
        apply_changes(root, plan)
        return plan


def _existing(root: Sysroot, paths: list[str]) -> list[Step]:
    """The removal of each of PATHS that exists (a folder with its content, a file, a link)."""
    return [RemoveTree(p) for p in paths if root.path(p).is_symlink() or root.path(p).exists()]


def tree_size(path: Path) -> int:
    """Bytes on disk under PATH (hard links counted once)."""
    return int(runner.run(["du", "-s", "-B1", str(path)]).stdout.split()[0])
