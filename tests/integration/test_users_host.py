"""kestrel-users on the host root (--root /): groupadd/useradd/userdel, in a private mount namespace.

The real /etc is never modified: the program runs under `unshare -m` with an overlay on /etc (writes go to
a temporary upper folder) and tmpfs on /home, /var/lib and /var/log (useradd's lastlog, Kestrel's lock).
The account files in that overlay are the test's own, so the outcome does not depend on this machine's users
and groups (a uid 2000 or a missing sudo group here).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from kestrel.sysroot import Sysroot
from tests.conftest import REPO, need_root

KESTREL_USERS = REPO / ".venv" / "bin" / "kestrel-users"
SCRIPT = """set -e
mount -t overlay kt-etc -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
for f in passwd group shadow gshadow nsswitch.conf; do cat "$1/accounts/$f" > "/etc/$f"; done
for d in /home /var/lib /var/log; do mount -t tmpfs kt-tmp "$d"; done
users="$2 --root / --config $3"
runs() { grep '^Would run' | cut -d' ' -f3 | tr '\\n' ' '; }
echo "dry=$($users add carol --admin --dry-run --no-push | runs)$(getent passwd carol || echo none) $(ls /home)"
$users add carol --admin
echo "passwd=$(getent passwd carol)"
echo "group=$(getent group carol)"
echo "sudo=$(getent group sudo)"
echo "shadow=$(getent shadow carol | cut -d: -f1,2)"
echo "home=$(stat -c '%u %a' /home/carol) $(ls /home/carol/.ssh | tr '\\n' ' ')"
echo "list=$(cat /etc/kestrel/users | grep -v '^#')"
echo "dryremove=$($users remove carol --dry-run --no-push | runs)$(getent passwd carol | cut -d: -f1)"
$users remove carol --delete-home
echo "after=$(getent passwd carol || echo gone) $(getent group carol || echo gone) $(ls /home)"
"""


SSHD_T = """set -e
mount -t tmpfs kt-run /run && mkdir /run/sshd
for addr in 10.10.0.57 192.168.1.5; do
  match="addr=$addr,user=root,host=x,laddr=10.10.0.1,lport=22"
  echo "$addr $(/usr/sbin/sshd -T -f "$1" -C "$match" | grep -E '^permitrootlogin ')"
done
"""


def test_frontend_sshd_refuses_root_from_the_cluster_network(tree: Sysroot) -> None:
    """The drop-in written by kestrel-users, read by the real sshd with Debian's layout (Include first)."""
    need_root()
    tree.path("/etc/ssh/sshd_config.d").mkdir(parents=True)
    proc = subprocess.run(
        [str(KESTREL_USERS), "--root", str(tree.root), "sync"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Created {tree.path('/etc/ssh/sshd_config.d/kestrel-root.conf')}" in proc.stderr
    main = tree.path("/etc/ssh/sshd_config")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tree.path("/etc/ssh/hk"))], check=True)
    main.write_text(
        f"Include {tree.path('/etc/ssh/sshd_config.d')}/*.conf\nHostKey {tree.path('/etc/ssh/hk')}\n"
        "PermitRootLogin yes\n"
    )
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", SSHD_T, "sh", str(main)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.splitlines() == ["10.10.0.57 permitrootlogin no", "192.168.1.5 permitrootlogin yes"], out.stderr


# The frontend's accounts as the test fixes them: a first admin (uid 1000) in sudo, nothing in the cluster range.
ACCOUNTS = {
    "passwd": "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "admin:x:1000:1000:admin:/home/admin:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\ndaemon:x:1:\nsudo:x:27:admin\nadmin:x:1000:\nnogroup:x:65534:\n",
    "shadow": "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nadmin:*:19000:0:99999:7:::\n"
    "nobody:*:19000:0:99999:7:::\n",
    "gshadow": "root:*::\ndaemon:*::\nsudo:*::admin\nadmin:!::\nnogroup:*::\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\ngshadow: files\n",
}


def digest(path: str) -> str | None:
    """The file's digest, None if it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def test_add_and_remove_on_the_host_root_use_useradd(tmp_path: Path) -> None:
    need_root()
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    config = tmp_path / "kestrel.yaml"
    shutil.copy(REPO / "etc-kestrel" / "kestrel.yaml", config)
    (tmp_path / "accounts").mkdir()
    for name, text in ACCOUNTS.items():
        (tmp_path / "accounts" / name).write_text(text)
    # whatever this machine has there (a real frontend has its users list): the run leaves it as it was
    before = {p: digest(p) for p in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/kestrel/users")}
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
            str(tmp_path),
            str(KESTREL_USERS),
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert out["dry"] == "groupadd useradd usermod ssh-keygen chown install none "
    assert out["dryremove"] == "groupdel userdel carol"
    assert out["passwd"] == "carol:x:2000:2000:carol (cluster user):/home/carol:/bin/bash"
    assert out["group"] == "carol:x:2000:"
    assert out["sudo"] == "sudo:x:27:admin,carol"
    assert out["shadow"] == "carol:*"
    assert out["home"] == "2000 700 authorized_keys id_ed25519 id_ed25519.pub "
    assert out["list"] == "carol:2000:/bin/bash:admin"
    assert out["after"] == "gone gone "
    assert {p: digest(p) for p in before} == before
