"""Cluster users: uid allocation, validation messages, passwd/group/shadow rendering, the users list."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel.config import Users
from kestrel.errors import InputError
from kestrel.users.userlist import ClusterUser, allocate_uid, format_users, new_user, parse_users, render_accounts

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "carol:x:2001:2001:Carol:/home/carol:/bin/bash\n"
)
GROUP = "root:x:0:\nsudo:x:27:carol\nstaff:x:2002:\n"
CONFIG = Users(uid_range=(2000, 2005))
ALICE = ClusterUser("alice", 2000, "/bin/bash")


def add(name: str, cluster: list[ClusterUser] | None = None, **kw: object) -> ClusterUser:
    return new_user(cluster or [], PASSWD, GROUP, CONFIG, name, **kw)  # type: ignore[arg-type]


def test_allocation_takes_the_first_free_uid_skipping_system_users_and_groups() -> None:
    assert add("alice").uid == 2000
    # 2001 is carol's (passwd), 2002 the gid of group staff: both skipped.
    assert add("bob", [ALICE]).uid == 2003
    assert allocate_uid((2000, 2002), {2000, 2002}) == 2001


def test_allocation_when_the_range_is_full() -> None:
    with pytest.raises(InputError) as e:
        allocate_uid((2000, 2001), {2000, 2001})
    assert str(e.value) == "no free uid left in users.uid_range 2000-2001"


@pytest.mark.parametrize(
    ("name", "kw", "message"),
    [
        (
            "Alice",
            {},
            "'Alice' is not a valid user name (POSIX: a-z, 0-9, '_', '-', starting with a letter or '_', at most 32)",
        ),
        (
            "a;rm -rf /",
            {},
            "'a;rm -rf /' is not a valid user name (POSIX: a-z, 0-9, '_', '-', starting with a letter "
            "or '_', at most 32)",
        ),
        (
            "-x",
            {},
            "'-x' is not a valid user name (POSIX: a-z, 0-9, '_', '-', starting with a letter or '_', at most 32)",
        ),
        (
            "a" * 33,
            {},
            f"'{'a' * 33}' is not a valid user name (POSIX: a-z, 0-9, '_', '-', starting with a letter "
            "or '_', at most 32)",
        ),
        ("root", {}, "root: kestrel-users never manages root (cluster keys give no access to the frontend's root)"),
        ("daemon", {}, "daemon: a system user of that name exists in /etc/passwd (uid 1); choose another name"),
        ("staff", {}, "staff: a group of that name exists in /etc/group (gid 2002); choose another name"),
        ("alice", {"uid": 999}, "uid 999 is outside users.uid_range 2000-2005"),
        ("alice", {"uid": 2001}, "uid 2001 is taken by carol in /etc/passwd"),
        ("alice", {"uid": 2002}, "uid 2002 is taken by staff in /etc/group"),
        ("alice", {"shell": "bash"}, "shell 'bash' is not an absolute path"),
        ("alice", {"shell": "/bin/sh:x"}, "shell '/bin/sh:x' is not an absolute path"),
    ],
)
def test_validation_messages(name: str, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as e:
        add(name, **kw)
    assert str(e.value) == message
    assert e.value.exit_code == 2


def test_existing_cluster_user_and_taken_uid() -> None:
    with pytest.raises(InputError, match=r"^alice is already a cluster user \(uid 2000\)$"):
        add("alice", [ALICE])
    with pytest.raises(InputError, match=r"^uid 2000 is taken by cluster user alice$"):
        add("bob", [ALICE], uid=2000)


def test_a_cluster_user_in_passwd_is_not_a_clash() -> None:
    # On the frontend the cluster users are in /etc/passwd too: they are ours, not system users.
    passwd = PASSWD + "alice:x:2000:2000::/home/alice:/bin/bash\n"
    assert new_user([ALICE], passwd, GROUP, CONFIG, "bob").uid == 2003


def test_users_list_round_trip_and_errors() -> None:
    users = [ClusterUser("bob", 2003, "/bin/zsh", admin=True), ALICE]
    text = format_users(users)
    assert text.splitlines()[2:] == ["alice:2000:/bin/bash:user", "bob:2003:/bin/zsh:admin"]
    assert parse_users(text) == sorted(users, key=lambda u: u.uid)
    with pytest.raises(InputError) as e:
        parse_users("alice:2000:/bin/bash:user\nbob:x:/bin/sh:user\n", "etc/kestrel/users")
    assert str(e.value) == "etc/kestrel/users:2: expected NAME:UID:SHELL:user|admin, got 'bob:x:/bin/sh:user'"
    with pytest.raises(InputError, match=r"^etc/kestrel/users:1: root: kestrel-users never manages root"):
        parse_users("root:2000:/bin/sh:user\n", "etc/kestrel/users")


def test_render_accounts_adds_replaces_and_removes_only_cluster_lines() -> None:
    current = {
        "/etc/passwd": PASSWD + "old:x:2004:2004:old (cluster user):/home/old:/bin/bash\n",
        "/etc/group": GROUP + "old:x:2004:\n",
        "/etc/shadow": "root:*:19000:0:99999:7:::\nold:*:19000:0:99999:7:::\n",
        "/etc/gshadow": None,
    }
    bob = ClusterUser("bob", 2003, "/bin/zsh", admin=True)
    out = render_accounts(current, [ALICE, bob], previous=["old"], home_base="/home/", admin_group="sudo", days=20000)
    assert "/etc/gshadow" not in out  # absent files stay absent
    assert out["/etc/passwd"] == PASSWD + (
        "alice:x:2000:2000:alice (cluster user):/home/alice:/bin/bash\n"
        "bob:x:2003:2003:bob (cluster user):/home/bob:/bin/zsh\n"
    )
    assert out["/etc/group"] == "root:x:0:\nsudo:x:27:carol,bob\nstaff:x:2002:\nalice:x:2000:\nbob:x:2003:\n"
    # '*' and never '!': sshd without PAM treats '!' as a locked account and refuses even keys.
    assert out["/etc/shadow"] == ("root:*:19000:0:99999:7:::\nalice:*:20000:0:99999:7:::\nbob:*:20000:0:99999:7:::\n")
    # Rendering again changes nothing; removing everyone restores the system lines byte for byte.
    again = render_accounts({**current, **out}, [ALICE, bob], ["alice", "bob"], "/home", "sudo", 20000)
    assert again == out
    empty = render_accounts({**current, **out}, [], ["alice", "bob", "old"], "/home", "sudo", 20000)
    assert empty["/etc/passwd"] == PASSWD and empty["/etc/group"] == GROUP


def test_render_accounts_refuses_a_uid_owned_by_another_account() -> None:
    with pytest.raises(InputError) as e:
        render_accounts({"/etc/passwd": PASSWD}, [ClusterUser("alice", 2001, "/bin/sh")], [], "/home", "sudo", 1)
    assert str(e.value) == "uid 2001 of cluster user alice is taken by carol in /etc/passwd"
