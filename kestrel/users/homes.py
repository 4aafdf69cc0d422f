"""A cluster user's home on the frontend, planned: the folder from /etc/skel, the key pair (ssh-keygen),
authorized_keys, and who owns all of it; its removal; where the user's own key is."""

from __future__ import annotations

import os
from pathlib import Path

from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.nodes.ssh import keygen_argv
from kestrel.plan import FileChange, Link, MakeDir, Plan, RemoveTree, RunCommand
from kestrel.sysroot import Sysroot, decode, encode
from kestrel.users import userkeys
from kestrel.users.accountfiles import load_users
from kestrel.users.userlist import ClusterUser

KEY_NAME = userkeys.KEY_NAME
# Appends the public key $1 to authorized_keys $2 (on a line of its own), which stays private.
_APPEND = 'if [ -s "$2" ] && [ -n "$(tail -c 1 "$2")" ]; then echo >> "$2"; fi && cat -- "$1" >> "$2" && chmod 600 "$2"'


def home_path(config: Config, name: str) -> str:
    """The system path of NAME's home: nfs.home/NAME."""
    return f"{config.nfs.home.rstrip('/')}/{name}"


def home_of(root: Sysroot, config: Config, name: str) -> Path:
    return root.path(home_path(config, name))


def plan_home(root: Sysroot, config: Config, user: ClusterUser) -> Plan:
    """Home (0700, from ROOT/etc/skel), key pair without passphrase, its public key authorised, all the user's.

    A home kept by an earlier `remove --keep-home` is reused with its keys (and given to the user's uid).
    """
    home = home_path(config, user.name)
    real = root.path(home)
    owner = (user.uid, user.gid)
    ids = f"{user.uid}:{user.gid}"
    plan = Plan()
    from_skel: set[str] = set()
    existing = real.exists()
    if not existing:
        plan.add(MakeDir(home, 0o700, owner))
        steps = _skel_steps(root.path("/etc/skel"), home, owner)
        plan.add(*steps)
        from_skel = {s.path for s in steps}
        links = [root.sys(s.path) for s in steps if isinstance(s, Link)]
        if links:
            plan.add(RunCommand(("chown", "-h", ids, *links), f"Gave the links from /etc/skel to {user.name}"))
    elif real.stat().st_mode & 0o7777 != 0o700:
        plan.add(RunCommand(("chmod", "700", str(real)), f"Made {real} private (mode 700)"))
    ssh_dir = f"{home}/.ssh"
    if not root.path(ssh_dir).is_dir() and ssh_dir not in from_skel:
        plan.add(MakeDir(ssh_dir, 0o700, owner))
    folder = userkeys.key_folder(config, user.name, home)
    if folder != ssh_dir:
        plan.merge(userkeys.plan_key_folder(root, user, home))
    key, authorized = f"{folder}/{KEY_NAME}", f"{ssh_dir}/authorized_keys"
    pub = f"{key}.pub"
    have = root.read(authorized)
    made = next((k for k in (key, f"{ssh_dir}/{KEY_NAME}") if root.path(k).exists()), None)  # (to be) moved
    if made:
        public = root.path(f"{made}.pub").read_text().strip()
        text = decode(have) or ""
        if public not in text.splitlines():
            new = text + ("" if not text or text.endswith("\n") else "\n") + public + "\n"
            plan.add(FileChange(authorized, have, encode(new), 0o600, owner))
    else:
        argv = keygen_argv(root.sys(key), f"{user.name}@{config.cluster.name}")
        plan.add(RunCommand(tuple(argv), f"Created {root.sys(key)}"))
        plan.add(RunCommand(("chown", ids, root.sys(key), root.sys(pub)), f"Gave {root.sys(key)} to {user.name}"))
        if have is None and authorized not in from_skel:
            plan.add(
                RunCommand(
                    (
                        "install",
                        "-m",
                        "600",
                        "-o",
                        str(user.uid),
                        "-g",
                        str(user.gid),
                        root.sys(pub),
                        root.sys(authorized),
                    ),
                    f"Created {root.sys(authorized)}",
                )
            )
        else:
            plan.add(
                RunCommand(
                    ("sh", "-c", _APPEND, "sh", root.sys(pub), root.sys(authorized)), f"Wrote {root.sys(authorized)}"
                )
            )
    if existing and _owned_by_others(real, owner):
        plan.add(RunCommand(("chown", "-R", "-h", ids, str(real)), f"Gave {real} to {user.name}"))
    return plan


def _skel_steps(skel: Path, folder: str, owner: tuple[int, int]) -> list[FileChange | MakeDir | Link]:
    """A copy of SKEL into FOLDER: folders and files with their modes, owned by OWNER; links as they are."""
    if not skel.is_dir():
        return []
    steps: list[FileChange | MakeDir | Link] = []
    for entry in sorted(skel.iterdir()):
        target = f"{folder}/{entry.name}"
        mode = entry.lstat().st_mode & 0o7777
        if entry.is_symlink():
            steps.append(Link(target, os.readlink(entry)))
        elif entry.is_dir():
            steps.append(MakeDir(target, mode, owner))
            steps += _skel_steps(entry, target, owner)
        elif entry.is_file():
            # authorized_keys is private whatever the skeleton says (it gets the user's key next)
            private = entry.name == "authorized_keys" and folder.endswith("/.ssh")
            steps.append(FileChange(target, None, entry.read_bytes(), 0o600 if private else mode, owner))
    return steps


def _owned_by_others(home: Path, owner: tuple[int, int]) -> bool:
    for folder, dirs, files in os.walk(home):
        for entry in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            st = os.lstat(entry)
            if (st.st_uid, st.st_gid) != owner:
                return True
    return False


def plan_home_removal(root: Sysroot, config: Config, name: str) -> Plan:
    home = home_path(config, name)
    return Plan([RemoveTree(home)] if root.path(home).is_dir() else [])


def private_key(root: Sysroot, config: Config, name: str) -> Path:
    """The cluster user NAME's own SSH key (kestrel-nodes exec --user NAME)."""
    if name not in {u.name for u in load_users(root)}:
        raise InputError(f"{name!r} is not a cluster user (see kestrel-users list)")
    return _key_path(root, config, name)


def public_key(root: Sysroot, config: Config, name: str) -> str | None:
    path = _key_path(root, config, name).with_name(KEY_NAME + ".pub")
    return path.read_text().strip() if path.is_file() else None


def _key_path(root: Sysroot, config: Config, name: str) -> Path:
    """Where NAME's key is now: its key folder, or the home it has not been moved out of yet."""
    wanted = root.path(userkeys.key_folder(config, name, home_path(config, name))) / KEY_NAME
    old = home_of(root, config, name) / ".ssh" / KEY_NAME
    return old if not wanted.exists() and old.exists() else wanted


def plan_keys_out_of_homes(root: Sysroot, config: Config) -> Plan:
    """With the firewall module: every user's key pair moved out of the exported home (a module turned on later)."""
    plan = Plan()
    if userkeys.enabled(config):
        for user in load_users(root):
            if root.path(home_path(config, user.name)).is_dir():
                plan.merge(userkeys.plan_key_folder(root, user, home_path(config, user.name)))
    return plan
