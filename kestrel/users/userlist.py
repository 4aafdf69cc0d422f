"""Cluster users (pure part): the users list, uid allocation, validation, passwd/group/shadow rendering."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kestrel.config import Users as UsersConfig
from kestrel.errors import InputError
from kestrel.sysroot import content_lines

USERS_PATH = "/etc/kestrel/users"
USERS_HEADER = (
    "# Kestrel cluster users: NAME:UID:SHELL:ROLE (uid = gid of the user's own group; ROLE user or admin).\n"
    "# Edit with kestrel-users; images receive them in their configure phase, running nodes by push.\n"
)
ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
# Debian's useradd NAME_REGEX without the trailing '$' of machine accounts.
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SHELL = re.compile(r"/[A-Za-z0-9_./+-]*")


@dataclass(frozen=True, order=True)
class ClusterUser:
    name: str
    uid: int
    shell: str
    admin: bool = False

    @property
    def gid(self) -> int:
        return self.uid

    def line(self) -> str:
        return f"{self.name}:{self.uid}:{self.shell}:{'admin' if self.admin else 'user'}"


def check_user_name(text: str) -> str:
    if not isinstance(text, str) or not _USER_NAME.fullmatch(text):
        raise InputError(
            f"{text!r} is not a valid user name (POSIX: a-z, 0-9, '_', '-', starting with a letter or '_', at most 32)"
        )
    if text == "root":
        raise InputError("root: kestrel-users never manages root (cluster keys give no access to the frontend's root)")
    return text


def check_shell(text: str) -> str:
    if not _SHELL.fullmatch(text) or ".." in text.split("/"):
        raise InputError(f"shell {text!r} is not an absolute path")
    return text


# -- the users list: ROOT/etc/kestrel/users ----------------------------------------------------------------


def parse_users(text: str, where: str = USERS_PATH) -> list[ClusterUser]:
    users: list[ClusterUser] = []
    for number, line in content_lines(text):
        fields = line.split(":")
        try:
            if len(fields) != 4 or fields[3] not in ("user", "admin") or not fields[1].isdigit():
                raise InputError(f"expected NAME:UID:SHELL:user|admin, got {line!r}")
            users.append(
                ClusterUser(check_user_name(fields[0]), int(fields[1]), check_shell(fields[2]), fields[3] == "admin")
            )
        except InputError as e:
            raise InputError(f"{where}:{number}: {e}") from None
    return users


def format_users(users: Iterable[ClusterUser]) -> str:
    return USERS_HEADER + "".join(u.line() + "\n" for u in sorted(users, key=lambda u: u.uid))


# -- validation and allocation ----------------------------------------------------------------------------


def colon_entries(text: str | None) -> dict[str, list[str]]:
    """name -> fields of a passwd/group/shadow style file (comments and blank lines ignored)."""
    found: dict[str, list[str]] = {}
    for line in (text or "").splitlines():
        if line and not line.startswith("#"):
            fields = line.split(":")
            found.setdefault(fields[0], fields)
    return found


def allocate_uid(uid_range: tuple[int, int], taken: set[int]) -> int:
    first, last = uid_range
    for uid in range(first, last + 1):
        if uid not in taken:
            return uid
    raise InputError(f"no free uid left in users.uid_range {first}-{last}")


def new_user(
    cluster: list[ClusterUser],
    passwd: str | None,
    group: str | None,
    config: UsersConfig,
    name: str,
    uid: int | None = None,
    shell: str | None = None,
    admin: bool = False,
) -> ClusterUser:
    """The user to add, or InputError: bad name or shell, a clash with a system user or group, a bad uid."""
    check_user_name(name)
    shell = check_shell(shell or config.shell)
    for u in cluster:
        if u.name == name:
            raise InputError(f"{name} is already a cluster user (uid {u.uid})")
    ours = {u.name for u in cluster}
    users = {n: f for n, f in colon_entries(passwd).items() if n not in ours}
    groups = {n: f for n, f in colon_entries(group).items() if n not in ours}
    if name in users:
        raise InputError(
            f"{name}: a system user of that name exists in /etc/passwd (uid {users[name][2]}); choose another name"
        )
    if name in groups:
        raise InputError(
            f"{name}: a group of that name exists in /etc/group (gid {groups[name][2]}); choose another name"
        )
    taken = {u.uid: f"cluster user {u.name}" for u in cluster}
    taken.update({_int(f[2]): f"{n} in /etc/group" for n, f in groups.items() if len(f) > 2})
    taken.update({_int(f[2]): f"{n} in /etc/passwd" for n, f in users.items() if len(f) > 2})
    first, last = config.uid_range
    if uid is None:
        uid = allocate_uid(config.uid_range, set(taken))
    elif not first <= uid <= last:
        raise InputError(f"uid {uid} is outside users.uid_range {first}-{last}")
    elif uid in taken:
        raise InputError(f"uid {uid} is taken by {taken[uid]}")
    return ClusterUser(name, uid, shell, admin)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1


# -- account files: passwd, group, shadow, gshadow of a tree (frontend, image, node) --------------------


def passwd_line(user: ClusterUser, home_base: str) -> str:
    return (
        f"{user.name}:x:{user.uid}:{user.gid}:{user.name} (cluster user):{home_base.rstrip('/')}/{user.name}:"
        f"{user.shell}"
    )


def group_line(user: ClusterUser) -> str:
    return f"{user.name}:x:{user.gid}:"


def shadow_line(user: ClusterUser, days: int) -> str:
    # '*': no password can match, yet the account is not locked. '!' would make sshd without PAM
    # (UsePAM no) refuse even key logins, as it treats a '!' hash as a locked account.
    return f"{user.name}:*:{days}:0:99999:7:::"


def gshadow_line(user: ClusterUser) -> str:
    return f"{user.name}:!::"


def render_accounts(
    current: dict[str, str | None],
    users: list[ClusterUser],
    previous: Iterable[str],
    home_base: str,
    admin_group: str,
    days: int,
) -> dict[str, str]:
    """New texts of the account files in CURRENT (path -> text, None: absent, left alone).

    Lines of the cluster users and of PREVIOUS ones (removed since) are replaced; every other line is kept
    byte for byte. Cluster admins are members of ADMIN_GROUP where that group exists.
    Raises InputError if a cluster user's name or uid belongs to a different account there.
    """
    managed = {u.name for u in users} | set(previous)
    passwd = colon_entries(current.get("/etc/passwd"))
    for u in users:
        for n, f in passwd.items():
            if n not in managed and len(f) > 2 and f[2] == str(u.uid):
                raise InputError(f"uid {u.uid} of cluster user {u.name} is taken by {n} in /etc/passwd")
    new_lines = {
        "/etc/passwd": [passwd_line(u, home_base) for u in users],
        "/etc/group": [group_line(u) for u in users],
        "/etc/shadow": [shadow_line(u, days) for u in users],
        "/etc/gshadow": [gshadow_line(u) for u in users],
    }
    admins = {u.name for u in users if u.admin}
    out: dict[str, str] = {}
    for path, text in current.items():
        if text is None or path not in new_lines:
            continue
        kept = [line for line in text.splitlines() if line.split(":", 1)[0] not in managed]
        if path in ("/etc/group", "/etc/gshadow"):
            kept = [_set_members(line, admin_group, admins, managed) for line in kept]
        out[path] = "".join(x + "\n" for x in kept + new_lines[path])
    return out


def _set_members(line: str, group: str, admins: set[str], managed: set[str]) -> str:
    """LINE with the cluster admins as members if it is GROUP's line; other members are kept."""
    fields = line.split(":")
    if fields[0] != group or len(fields) < 4:
        return line
    members = [m for m in fields[-1].split(",") if m and m not in managed]
    fields[-1] = ",".join(members + sorted(admins))
    return ":".join(fields)


def with_user(users: list[ClusterUser], user: ClusterUser) -> list[ClusterUser]:
    return sorted([*users, user], key=lambda u: u.uid)


def without_user(users: list[ClusterUser], name: str) -> tuple[list[ClusterUser], ClusterUser]:
    for u in users:
        if u.name == name:
            return [x for x in users if x.name != name], u
    raise InputError(f"{name} is not a cluster user (see kestrel-users list)")


# -- the shared home on the nodes: a systemd mount unit, so it does not depend on who writes fstab ------


def unit_name_for_path(path: str) -> str:
    """systemd-escape --path: '/home' -> 'home', '/export/home' -> 'export-home'."""
    parts = [p for p in path.split("/") if p]
    out = []
    for part in parts:
        chars = [c if (c.isascii() and (c.isalnum() or c in ":_.")) else f"\\x{ord(c):02x}" for c in part]
        if chars and chars[0] == ".":
            chars[0] = "\\x2e"
        out.append("".join(chars))
    return "-".join(out) or "-"


def home_mount_unit(server: str, export: str, home: str) -> tuple[str, str]:
    """(unit file name, text) mounting SERVER:EXPORT on HOME over NFSv3 (what the frontend exports)."""
    return f"{unit_name_for_path(home)}.mount", (
        "# generated by Kestrel (core_users): the cluster users' homes, shared by the frontend over NFS\n"
        "[Unit]\n"
        "Description=Cluster homes from the frontend\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Mount]\n"
        f"What={server}:{export}\n"
        f"Where={home}\n"
        "Type=nfs\n"
        # nolock: no rpc.statd on a minimal node; homes are not shared-locked between nodes.
        "Options=vers=3,tcp,nolock,_netdev\n\n"
        "[Install]\n"
        "WantedBy=remote-fs.target\n"
    )
