"""The cluster users pushed to running nodes over SFTP (remote writes: a node's files are not under --root)."""

from __future__ import annotations

import contextlib
import logging

import paramiko

from kestrel.config import Config
from kestrel.errors import KestrelError
from kestrel.nodes import fanout, registry, ssh
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot, decode, encode
from kestrel.users import userkeys
from kestrel.users.accountfiles import MODES, load_users, new_texts, read_texts, today
from kestrel.users.hosttrust import known_hosts_body
from kestrel.users.userlist import ClusterUser

logger = logging.getLogger(__name__)


class SftpFiles:
    """A running node's files over SFTP; writes go to a temp file renamed over the old one (atomic)."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp

    def read(self, path: str) -> str | None:
        try:
            with self.sftp.open(path, "rb") as f:
                return decode(f.read())
        except FileNotFoundError:
            return None

    def write(self, path: str, text: str, mode: int) -> None:
        """An existing file keeps its mode and owner; a new one gets MODE."""
        folder, name = path.rsplit("/", 1)
        try:
            st = self.sftp.stat(path)
        except FileNotFoundError:
            st = None
            with contextlib.suppress(OSError):
                self.sftp.mkdir(folder, 0o755)
        tmp = f"{folder}/.{name}.kestrel-tmp"
        with self.sftp.open(tmp, "wb") as f:
            f.write(encode(text))
        self.sftp.chmod(tmp, (st.st_mode & 0o7777) if st and st.st_mode else mode)
        if st and st.st_uid is not None and st.st_gid is not None:
            self.sftp.chown(tmp, st.st_uid, st.st_gid)
        self.sftp.posix_rename(tmp, path)


def sync_node(files: SftpFiles, users: list[ClusterUser], config: Config, known_hosts: str) -> list[str]:
    """Bring one node to USERS (what plan_accounts does to a local tree); returns the paths written."""
    changed = new_texts(read_texts(files.read), users, config, known_hosts, today())
    for path, text in changed.items():
        files.write(path, text, MODES.get(path, 0o644))
    return list(changed)


def running_nodes(root: Sysroot) -> list[ssh.Target]:
    """Registered nodes not known to be down (a down node gets the users from its image when it boots)."""
    states = nodestate.load_states(root)
    return [
        ssh.Target(n.name, str(n.ip))
        for n in registry.load_registry(root)
        if n.mac not in states or states[n.mac].state is not nodestate.State.DOWN
    ]


def describe_push(root: Sysroot) -> list[str]:
    """What a push would do (for --dry-run): which nodes it would try; none is contacted."""
    targets = running_nodes(root)
    if not targets:
        return []
    return [f"Would update the cluster users on {_count(len(targets))}: " + ", ".join(t.name for t in targets)]


def push_to_nodes(
    root: Sysroot, config: Config, parallel: int = 10, connect_timeout: float = 3.0
) -> list[tuple[str, str]]:
    """Send the users to every registered node that answers; returns (node, why) for those that did not.

    A node that is down gets them from its image when it boots, so a failure here is only a warning.
    """
    users, body = load_users(root), known_hosts_body(root, config)
    targets = running_nodes(root)
    if not targets:
        return []

    keys = userkeys.key_lines(root, users) if userkeys.enabled(config) else ""

    def push(pool: ssh.Pool, t: ssh.Target) -> tuple[str, str | None]:
        try:
            with pool.client(t).open_sftp() as sftp:
                sync_node(SftpFiles(sftp), users, config, body)
            if keys and not (delivered := userkeys.deliver(pool, t, keys)).ok:
                return t.name, f"users' keys: {delivered.why()}"
            return t.name, None
        except (OSError, paramiko.SSHException, EOFError, KestrelError) as e:
            return t.name, ssh.describe_error(e, pool)

    with ssh.root_pool(root, config.nodes.ssh_key, connect_timeout, config.network.netns) as pool:
        results = fanout.fan_out(targets, lambda t: push(pool, t), parallel)
    failed = [(n, why) for n, why in results if why is not None]
    logger.info(f"Updated the cluster users on {_count(len(results) - len(failed))}")
    for name, why in failed:
        logger.warning(f"{name}: not updated ({why}); it gets the users from its image at next boot")
    return failed


def _count(n: int) -> str:
    return f"{n} running node{'s' if n != 1 else ''}"
