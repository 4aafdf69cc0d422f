"""The files that carry the cluster users on a tree (frontend, image, node): account files, the known_hosts
block and the users list copy. Their new texts are computed purely; on a local tree they become a plan."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from kestrel.config import Config
from kestrel.nodes.ssh import KNOWN_HOSTS
from kestrel.plan import FileChange, Plan
from kestrel.sysroot import Sysroot, decode, encode, read_block, replace_block
from kestrel.users.userlist import ACCOUNT_FILES, USERS_PATH, ClusterUser, format_users, parse_users, render_accounts

TREE_FILES = (*ACCOUNT_FILES, KNOWN_HOSTS, USERS_PATH)
MODES = {"/etc/passwd": 0o644, "/etc/group": 0o644, "/etc/shadow": 0o640, "/etc/gshadow": 0o640}


def load_users(root: Sysroot) -> list[ClusterUser]:
    data = root.read(USERS_PATH)
    return parse_users(data.decode("utf-8", "replace"), root.sys(USERS_PATH)) if data else []


def today() -> int:
    """Days since the epoch: the 'last changed' field of new shadow lines."""
    return int(time.time() // 86400)


def new_texts(
    current: Mapping[str, str | None],
    users: list[ClusterUser],
    config: Config,
    known_hosts: str,
    days: int,
    accounts: bool = True,
) -> dict[str, str]:
    """path -> new text of each of TREE_FILES that must change, given their CURRENT texts (None: absent).

    The tree's own copy of the users list says who was a cluster user before, so removed users go too.
    Without ACCOUNTS only the known_hosts block and the list are kept up to date (useradd did the rest).
    """
    old = current.get(USERS_PATH)
    previous = [u.name for u in parse_users(old, USERS_PATH)] if old else []
    out: dict[str, str] = {}
    if accounts:
        have = {p: current.get(p) for p in ACCOUNT_FILES}
        for p in ("/etc/passwd", "/etc/group", "/etc/shadow"):
            have[p] = have[p] or ""
        for path, text in render_accounts(
            have, users, previous, config.nfs.home, config.users.admin_group, days
        ).items():
            if text != have[path]:
                out[path] = text
    hosts = current.get(KNOWN_HOSTS) or ""
    if (read_block(hosts, KNOWN_HOSTS) or "") != known_hosts:
        out[KNOWN_HOSTS] = replace_block(hosts, known_hosts, KNOWN_HOSTS)
    listing = format_users(users)
    if old != listing:
        out[USERS_PATH] = listing
    return out


def read_texts(read: Callable[[str], str | None]) -> dict[str, str | None]:
    return {p: read(p) for p in TREE_FILES}


def plan_accounts(
    tree: Sysroot, users: list[ClusterUser], config: Config, known_hosts: str, accounts: bool = True
) -> Plan:
    """The writes that bring TREE to USERS (see new_texts), in the order account files, known_hosts, list."""
    raw = {p: tree.read(p) for p in TREE_FILES}
    current = {p: decode(data) for p, data in raw.items()}
    plan = Plan()
    for path, text in new_texts(current, users, config, known_hosts, today(), accounts).items():
        plan.add(keeping_mode(tree, path, raw[path], encode(text), MODES.get(path, 0o644)))
    return plan


def keeping_mode(tree: Sysroot, path: str, old: bytes | None, new: bytes, mode: int) -> FileChange:
    """A write of PATH that keeps the mode and owner of the file there (shadow is root:shadow 0640 in
    Debian); MODE and the writer's owner for a new file."""
    try:
        st = tree.path(path).stat()
    except FileNotFoundError:
        return FileChange(path, old, new, mode)
    return FileChange(path, old, new, st.st_mode & 0o7777, (st.st_uid, st.st_gid))
