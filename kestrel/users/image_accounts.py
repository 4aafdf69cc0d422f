"""The cluster users in image trees, planned: account files, known_hosts and the mount of the shared home
(each published image when users change; one image in its configure phase, by `kestrel-users apply-image`)."""

from __future__ import annotations

from dataclasses import dataclass

from kestrel import names
from kestrel.config import Config
from kestrel.errors import KestrelError
from kestrel.plan import FileChange, Link, MakeDir, Plan
from kestrel.sysroot import Sysroot, encode
from kestrel.users.accountfiles import plan_accounts
from kestrel.users.hosttrust import host_keys_in, image_host_keys, image_roots, known_hosts_body
from kestrel.users.userlist import ClusterUser, home_mount_unit

SYSTEMD = "/etc/systemd/system"


@dataclass
class ImagePlan:
    """What one image tree gets: its plan, with paths inside TREE."""

    name: str
    tree: Sysroot
    plan: Plan


def plan_image(root: Sysroot, config: Config, tree: Sysroot, users: list[ClusterUser], known_hosts: str) -> Plan:
    """Give the image TREE the cluster USERS, the KNOWN_HOSTS block and the home mount of the frontend at ROOT."""
    _check_image_root(tree)
    plan = plan_accounts(tree, users, config, known_hosts)
    plan.merge(_home_mount(tree, root, config))
    return plan


def plan_images(root: Sysroot, config: Config, users: list[ClusterUser]) -> list[ImagePlan]:
    """Every current image under ROOT (so a reboot keeps the change), with the frontend's known_hosts."""
    body = known_hosts_body(root, config)
    return [
        ImagePlan(name, tree, plan_image(root, config, tree, users, body))
        for name, tree in ((n, Sysroot(p)) for n, p in image_roots(root).items())
    ]


def plan_image_build(
    root: Sysroot, config: Config, tree: Sysroot, users: list[ClusterUser], name: str | None
) -> tuple[Plan, str]:
    """The plan for image NAME being built at TREE, and its known_hosts body, which the frontend gets too:
    the image's own host keys (maybe not published yet) are trusted for its nodes."""
    _check_image_root(tree)
    keys = image_host_keys(root)
    if name is not None:
        names.parse_label(name, "image name")
        own = host_keys_in(tree.path("/etc/ssh"))
        if own:
            keys[name] = own
    body = known_hosts_body(root, config, keys)
    return plan_image(root, config, tree, users, body), body


def _check_image_root(tree: Sysroot) -> None:
    if not tree.path("/etc").is_dir():
        raise KestrelError(f"{tree.root}: not an image root (no etc/)")


def _home_mount(tree: Sysroot, root: Sysroot, config: Config) -> Plan:
    """The node mounts the home the frontend exports (its path under --root) where passwd says homes are."""
    unit, text = home_mount_unit(str(config.network.ip), root.sys(config.nfs.home), config.nfs.home)
    path, wants = f"{SYSTEMD}/{unit}", f"{SYSTEMD}/remote-fs.target.wants"
    plan = Plan()
    old = tree.read(path)
    if old != encode(text):
        plan.add(FileChange(path, old, encode(text)))
    if not tree.path(f"{wants}/{unit}").is_symlink():
        if not tree.path(wants).is_dir():
            plan.add(MakeDir(wants))
        plan.add(Link(f"{wants}/{unit}", f"../{unit}"))
    return plan
