"""Cluster users on real trees: frontend accounts, homes and keys, known_hosts, images, running nodes."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Protocol

import paramiko

from kestrel import names, runner
from kestrel.config import Config
from kestrel.errors import InputError, KestrelError
from kestrel.images.store import IMAGES_DIR
from kestrel.nodes import knownhosts, registry, ssh
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot, atomic_write, read_block, replace_block
from kestrel.users.userlist import (
    ACCOUNT_FILES,
    USERS_PATH,
    ClusterUser,
    check_user_name,
    format_users,
    home_mount_unit,
    new_user,
    parse_users,
    render_accounts,
    with_user,
    without_user,
)

logger = logging.getLogger(__name__)

KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
KEY_NAME = "id_ed25519"
_MODES = {"/etc/passwd": 0o644, "/etc/group": 0o644, "/etc/shadow": 0o640, "/etc/gshadow": 0o640}


class Files(Protocol):
    """Where account files live: a tree on the frontend (an image, a --root) or a node over SFTP."""

    def read(self, path: str) -> str | None: ...

    def write(self, path: str, text: str, mode: int) -> None: ...


class TreeFiles:
    def __init__(self, root: Sysroot) -> None:
        self.root = root

    def read(self, path: str) -> str | None:
        data = self.root.read(path)
        return None if data is None else data.decode("utf-8", "surrogateescape")

    def write(self, path: str, text: str, mode: int) -> None:
        """Atomic; an existing file keeps its mode and owner (shadow is root:shadow 0640 in Debian)."""
        real = self.root.path(path)
        try:
            st = real.stat()
            mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
        except FileNotFoundError:
            owner = None
        atomic_write(real, text.encode("utf-8", "surrogateescape"), mode)
        if owner:
            os.chown(real, *owner)


def load_users(root: Sysroot) -> list[ClusterUser]:
    data = root.read(USERS_PATH)
    return parse_users(data.decode("utf-8", "replace"), root.sys(USERS_PATH)) if data else []


def sync_accounts(files: Files, users: list[ClusterUser], config: Config, known_hosts: str,
                  accounts: bool = True) -> list[str]:
    """Bring a tree (frontend, image, node) to USERS: account files, known_hosts block, users list copy.

    The tree's own copy of the users list says who was a cluster user before, so removed users go too.
    Returns the paths written.
    """
    old = files.read(USERS_PATH)
    previous = [u.name for u in parse_users(old, USERS_PATH)] if old else []
    written = []
    if accounts:
        current = {p: files.read(p) for p in ACCOUNT_FILES}
        for p in ("/etc/passwd", "/etc/group", "/etc/shadow"):
            current[p] = current[p] or ""
        days = int(time.time() // 86400)
        for path, text in render_accounts(current, users, previous, config.nfs.home, config.users.admin_group,
                                          days).items():
            if text != current[path]:
                files.write(path, text, _MODES[path])
                written.append(path)
    have = files.read(KNOWN_HOSTS) or ""
    if (read_block(have, KNOWN_HOSTS) or "") != known_hosts:
        files.write(KNOWN_HOSTS, replace_block(have, known_hosts, KNOWN_HOSTS), 0o644)
        written.append(KNOWN_HOSTS)
    listing = format_users(users)
    if old != listing:
        files.write(USERS_PATH, listing, 0o644)
        written.append(USERS_PATH)
    return written


# -- known_hosts: the nodes' host keys come from their images, never from a first connection -------------

def image_host_keys(root: Sysroot) -> dict[str, list[knownhosts.HostKey]]:
    """image name -> public host keys found in ROOT/srv/kestrel/images/NAME/etc/ssh/ssh_host_*_key.pub."""
    found: dict[str, list[knownhosts.HostKey]] = {}
    folder = root.path(IMAGES_DIR)
    if not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.endswith(".versions") or not _is_name(entry.name):
            continue
        keys = _host_keys_in(entry / "etc" / "ssh")
        if keys:
            found[entry.name] = keys
    return found


def _host_keys_in(folder: Path) -> list[knownhosts.HostKey]:
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
    pattern = [knownhosts.name_pattern(config.nodes.name_pattern), f"*.{domain}",
               knownhosts.ip_pattern(config.network.network), *not_front]
    for image in sorted(keys):
        for key in keys[image]:
            entries.append((pattern, key))
    for pub in sorted(root.path("/etc/ssh").glob("ssh_host_*_key.pub")):
        with contextlib.suppress(ValueError, OSError):
            entries.append(([front, f"{front}.{domain}", str(config.network.ip)],
                            knownhosts.parse_public_key(pub.read_text(), str(pub))))
    return knownhosts.render(entries)


# -- the frontend --------------------------------------------------------------------------------------------

def home_of(root: Sysroot, config: Config, name: str) -> Path:
    return root.path(config.nfs.home) / name


def add_user(root: Sysroot, config: Config, name: str, uid: int | None, shell: str | None, admin: bool) -> ClusterUser:
    """Create NAME on the frontend: account, home with skel, key pair, authorized_keys, known_hosts."""
    with root.lock():
        users = load_users(root)
        files = TreeFiles(root)
        user = new_user(users, files.read("/etc/passwd"), files.read("/etc/group"), config.users, name, uid, shell,
                        admin)
        users = with_user(users, user)
        if root.is_host:
            _useradd(root, config, user)
        logger.info(f"Created cluster user {user.name} (uid {user.uid})")
        make_home(root, config, user)
        _sync_frontend(root, config, users)
    return user


def remove_user(root: Sysroot, config: Config, name: str, keep_home: bool) -> ClusterUser:
    with root.lock():
        users, user = without_user(load_users(root), check_user_name(name))
        if root.is_host:
            runner.run(["userdel", user.name])
            if runner.run(["getent", "group", user.name], check=False).returncode == 0:
                runner.run(["groupdel", user.name])
        _sync_frontend(root, config, users)
        logger.info(f"Removed cluster user {user.name}")
        home = home_of(root, config, user.name)
        if not keep_home and home.is_dir():
            shutil.rmtree(home)
            logger.info(f"Removed {home}")
    return user


def sync_frontend(root: Sysroot, config: Config) -> None:
    """Rewrite the frontend's known_hosts (new nodes, new images) and its account files under a --root."""
    _sync_frontend(root, config, load_users(root))


def _sync_frontend(root: Sysroot, config: Config, users: list[ClusterUser]) -> None:
    # On the host, useradd/userdel did the account files (they know about nscd and the shadow locks).
    for path in sync_accounts(TreeFiles(root), users, config, known_hosts_body(root, config),
                              accounts=not root.is_host):
        logger.info(f"Wrote {root.sys(path)}")


def _useradd(root: Sysroot, config: Config, user: ClusterUser) -> None:
    home = f"{config.nfs.home.rstrip('/')}/{user.name}"
    runner.run(["groupadd", "--gid", str(user.gid), user.name])
    runner.run(["useradd", "--uid", str(user.uid), "--gid", str(user.gid), "--home-dir", home, "--no-create-home",
                "--shell", user.shell, "--comment", f"{user.name} (cluster user)", "--password", "*", user.name])
    if user.admin and runner.run(["getent", "group", config.users.admin_group], check=False).returncode == 0:
        runner.run(["usermod", "--append", "--groups", config.users.admin_group, user.name])


def make_home(root: Sysroot, config: Config, user: ClusterUser) -> None:
    """Home (0700, from ROOT/etc/skel), key pair without passphrase, its public key authorised.

    A home kept by an earlier `remove --keep-home` is reused with its keys.
    """
    home = home_of(root, config, user.name)
    if not home.exists():
        skel = root.path("/etc/skel")
        if skel.is_dir():
            shutil.copytree(skel, home, symlinks=True)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        logger.info(f"Created {home}")
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    key = ssh_dir / KEY_NAME
    if not key.exists():
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user.name}@{config.cluster.name}",
                    "-f", str(key)])
        logger.info(f"Created {key}")
    public = key.with_name(KEY_NAME + ".pub").read_text().strip()
    authorized = ssh_dir / "authorized_keys"
    have = authorized.read_text() if authorized.exists() else ""
    if public not in have.splitlines():
        atomic_write(authorized, (have + ("" if not have or have.endswith("\n") else "\n") + public + "\n").encode(),
                     0o600)
    home.chmod(0o700)
    for folder, dirs, files in os.walk(home):
        for entry in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(entry, user.uid, user.gid)


def private_key(root: Sysroot, config: Config, name: str) -> Path:
    """The cluster user NAME's own SSH key (kestrel-nodes exec --user NAME)."""
    if name not in {u.name for u in load_users(root)}:
        raise InputError(f"{name!r} is not a cluster user (see kestrel-users list)")
    return home_of(root, config, name) / ".ssh" / KEY_NAME


def public_key(root: Sysroot, config: Config, name: str) -> str | None:
    path = home_of(root, config, name) / ".ssh" / (KEY_NAME + ".pub")
    return path.read_text().strip() if path.is_file() else None


# -- images (configure phase) and running nodes (pushed over SSH) ----------------------------------------

def image_roots(root: Sysroot) -> dict[str, Path]:
    """image name -> its current root: ROOT/srv/kestrel/images/NAME (the published symlink or a folder)."""
    folder = root.path(IMAGES_DIR)
    if not folder.is_dir():
        return {}
    return {e.name: e for e in sorted(folder.iterdir())
            if e.is_dir() and not e.name.endswith(".versions") and _is_name(e.name)}


def apply_to_image(root: Sysroot, config: Config, image_root: Path, name: str | None = None) -> list[str]:
    """Give the image at IMAGE_ROOT the cluster users, known_hosts and the home mount of the frontend at ROOT.

    NAME: the image being built; its own host keys (in IMAGE_ROOT, maybe not published yet) are trusted
    for its nodes, on the image and on the frontend.
    """
    if not (image_root / "etc").is_dir():
        raise KestrelError(f"{image_root}: not an image root (no etc/)")
    keys = image_host_keys(root)
    tree = Sysroot(image_root)
    if name is not None:
        try:
            names.check_name(name, "image name")
        except ValueError as e:
            raise InputError(str(e)) from None
        own = _host_keys_in(tree.path("/etc/ssh"))
        if own:
            keys[name] = own
    body = known_hosts_body(root, config, keys)
    written = sync_accounts(TreeFiles(tree), load_users(root), config, body)
    written += _home_mount(tree, root, config)
    with root.lock():
        sync_accounts(TreeFiles(root), load_users(root), config, body, accounts=False)
    return written


def _home_mount(tree: Sysroot, root: Sysroot, config: Config) -> list[str]:
    """The node mounts the home the frontend exports (its path under --root) where passwd says homes are."""
    unit, text = home_mount_unit(str(config.network.ip), root.sys(config.nfs.home), config.nfs.home)
    path, link = f"/etc/systemd/system/{unit}", f"/etc/systemd/system/remote-fs.target.wants/{unit}"
    written = []
    if tree.read(path) != text.encode():
        atomic_write(tree.path(path), text.encode(), 0o644)
        written.append(path)
    wants = tree.path(link)
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(f"../{unit}")
        written.append(link)
    return written


def apply_to_images(root: Sysroot, config: Config) -> None:
    for name, path in image_roots(root).items():
        if apply_to_image(root, config, path):
            logger.info(f"Updated the cluster users of image {name}")


class SftpFiles:
    """A running node's files over SFTP; writes go to a temp file renamed over the old one (atomic)."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def read(self, path: str) -> str | None:
        try:
            with self.sftp.open(path, "rb") as f:
                return f.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return None

    def write(self, path: str, text: str, mode: int) -> None:
        folder, name = path.rsplit("/", 1)
        try:
            st = self.sftp.stat(path)
        except FileNotFoundError:
            st = None
            with contextlib.suppress(OSError):
                self.sftp.mkdir(folder, 0o755)
        tmp = f"{folder}/.{name}.kestrel-tmp"
        with self.sftp.open(tmp, "wb") as f:
            f.write(text.encode("utf-8", "surrogateescape"))
        self.sftp.chmod(tmp, (st.st_mode & 0o7777) if st and st.st_mode else mode)
        if st and st.st_uid is not None and st.st_gid is not None:
            self.sftp.chown(tmp, st.st_uid, st.st_gid)
        self.sftp.posix_rename(tmp, path)


def running_nodes(root: Sysroot) -> list[ssh.Target]:
    """Registered nodes not known to be down (a down node gets the users from its image when it boots)."""
    states = nodestate.load_states(root)
    return [ssh.Target(n.name, str(n.ip)) for n in registry.load_registry(root)
            if n.mac not in states or states[n.mac].state is not nodestate.State.DOWN]


def push_to_nodes(root: Sysroot, config: Config, parallel: int = 10,
                  connect_timeout: float = 3.0) -> list[tuple[str, str]]:
    """Send the users to every registered node that answers; returns (node, why) for those that did not.

    A node that is down gets them from its image when it boots, so a failure here is only a warning.
    """
    users, body = load_users(root), known_hosts_body(root, config)
    targets = running_nodes(root)
    if not targets:
        return []

    def push(pool: ssh.Pool, t: ssh.Target) -> tuple[str, str | None]:
        try:
            with pool.client(t).open_sftp() as sftp:
                sync_accounts(SftpFiles(sftp), users, config, body)
            return t.name, None
        except (OSError, paramiko.SSHException, EOFError, KestrelError) as e:
            return t.name, ssh.describe_error(e, pool)

    with ssh.root_pool(root, config.nodes.ssh_key, connect_timeout, config.network.netns) as pool:
        results = ssh.fan_out(targets, lambda t: push(pool, t), parallel)
    failed = [(n, why) for n, why in results if why is not None]
    done = len(results) - len(failed)
    logger.info(f"Updated the cluster users on {done} running node{'s' if done != 1 else ''}")
    for name, why in failed:
        logger.warning(f"{name}: not updated ({why}); it gets the users from its image at next boot")
    return failed
