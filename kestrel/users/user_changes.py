"""Every change of the cluster users, planned: on the frontend (useradd/userdel on the host, the account files
under any other root; homes; known_hosts; the users list; the sshd drop-in), then in each image tree.

Nothing here writes: the caller takes the lock, plans, and carries the plans out (or describes them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kestrel import runner
from kestrel.config import Config
from kestrel.nodes.ssh import keygen_argv
from kestrel.plan import MakeDir, Plan, RunCommand
from kestrel.sysroot import Sysroot, decode
from kestrel.users import rootaccess
from kestrel.users.accountfiles import load_users, plan_accounts
from kestrel.users.homes import home_path, plan_home, plan_home_removal
from kestrel.users.hosttrust import known_hosts_body
from kestrel.users.image_accounts import ImagePlan, plan_images
from kestrel.users.userlist import ClusterUser, check_user_name, colon_entries, new_user, with_user, without_user


@dataclass
class UserChange:
    """A planned change: the frontend's plan (paths under its root), then each image's."""

    users: list[ClusterUser]
    frontend: Plan
    images: list[ImagePlan] = field(default_factory=list)
    user: ClusterUser | None = None  # the user added or removed


def plan_add(
    root: Sysroot, config: Config, name: str, uid: int | None, shell: str | None, admin: bool, root_key: bool = False
) -> UserChange:
    """NAME on the frontend (account, home with skel, key pair, authorized_keys, known_hosts) and the images.
    ROOT_KEY: the push to running nodes that follows needs the frontend's root key (nodes.ssh_key); made first
    if it is missing, so the change is complete or (ssh-keygen failing) not started."""
    users = load_users(root)
    user = new_user(
        users, decode(root.read("/etc/passwd")), decode(root.read("/etc/group")), config.users, name, uid, shell, admin
    )
    users = with_user(users, user)
    plan = plan_root_key(root, config) if root_key else Plan()
    plan.merge(_useradd(config, user) if root.is_host else Plan())
    plan.merge(plan_home(root, config, user))
    plan.merge(_frontend_files(root, config, users))
    return UserChange(users, plan, plan_images(root, config, users), user)


def plan_root_key(root: Sysroot, config: Config) -> Plan:
    """The frontend's root key pair (nodes.ssh_key) made when missing, as the first image build makes it."""
    key = config.nodes.ssh_key
    if root.path(key).exists():
        return Plan()
    folder = key.rsplit("/", 1)[0] or "/"
    plan = Plan() if root.path(folder).is_dir() else Plan([MakeDir(folder, 0o700)])
    plan.add(RunCommand(tuple(keygen_argv(root.sys(key), "root@kestrel-frontend")), f"Created {root.sys(key)}"))
    return plan


def plan_remove(root: Sysroot, config: Config, name: str, keep_home: bool) -> UserChange:
    """NAME gone from the frontend (its home too unless KEEP_HOME) and from the images."""
    users, user = without_user(load_users(root), check_user_name(name))
    plan = _userdel(root, user) if root.is_host else Plan()
    plan.merge(_frontend_files(root, config, users))
    if not keep_home:
        plan.merge(plan_home_removal(root, config, user.name))
    return UserChange(users, plan, plan_images(root, config, users), user)


def plan_sync(root: Sysroot, config: Config) -> UserChange:
    """The frontend's known_hosts (new nodes, new images), its account files under a --root, and the images."""
    users = load_users(root)
    return UserChange(users, _frontend_files(root, config, users), plan_images(root, config, users))


def _frontend_files(root: Sysroot, config: Config, users: list[ClusterUser]) -> Plan:
    # On the host, useradd/userdel do the account files (they know about nscd and the shadow locks).
    plan = plan_accounts(root, users, config, known_hosts_body(root, config), accounts=not root.is_host)
    plan.merge(rootaccess.plan_dropin(root, config))
    return plan


def _useradd(config: Config, user: ClusterUser) -> Plan:
    home = home_path(config, user.name)
    plan = Plan(
        [
            RunCommand(("groupadd", "--gid", str(user.gid), user.name), f"Created group {user.name} ({user.gid})"),
            RunCommand(
                (
                    "useradd",
                    "--uid",
                    str(user.uid),
                    "--gid",
                    str(user.gid),
                    "--home-dir",
                    home,
                    "--no-create-home",
                    "--shell",
                    user.shell,
                    "--comment",
                    f"{user.name} (cluster user)",
                    "--password",
                    "*",
                    user.name,
                ),
                f"Created account {user.name} ({user.uid})",
            ),
        ]
    )
    group = config.users.admin_group
    if user.admin and _getent("group", group):
        plan.add(RunCommand(("usermod", "--append", "--groups", group, user.name), f"Added {user.name} to {group}"))
    return plan


def _userdel(root: Sysroot, user: ClusterUser) -> Plan:
    """userdel, and the user's own group: removed first (-f: it is still the user's primary group), as userdel
    alone removes it or not depending on login.defs. A group another account has as its primary one stays."""
    plan = Plan()
    others = [
        n
        for n, f in colon_entries(decode(root.read("/etc/passwd"))).items()
        if n != user.name and len(f) > 3 and f[3] == str(user.gid)
    ]
    if _getent("group", user.name) and not others:
        plan.add(RunCommand(("groupdel", "--force", user.name), f"Removed group {user.name}"))
    plan.add(RunCommand(("userdel", user.name), f"Removed account {user.name}"))
    return plan


def _getent(database: str, key: str) -> bool:
    """Whether the name service knows KEY (read only: also run by --dry-run)."""
    return runner.run(["getent", database, key], check=False).ok
