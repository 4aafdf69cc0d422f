"""A Debian 12 server with systemd as PID 1, in a container (systemd-nspawn) on this machine, its network the
cluster bridge of a kt- network namespace (boot() below: the nspawn flags that matter).

The root (Debian's dnsmasq, nginx, nfs-ganesha, rpcbind, python3-venv...) is bootstrapped once and cached in
KESTREL_CACHE_DIR like image bases; each test module boots a fresh copy of it. The namespace has no route to the
package mirrors, so the root holds every package setup.sh --frontend wants, and pip gets a wheelhouse of Kestrel's
dependencies (downloaded on the host, also cached)."""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kestrel.images.bootstrap import cache_dir
from kestrel.net.netns import Topology
from kestrel.sysroot import Sysroot
from tests.conftest import REPO

PACKAGES = (
    "systemd-sysv dbus dnsmasq nginx-light nfs-ganesha nfs-ganesha-vfs rpcbind nfs-common ipxe pxelinux "
    "syslinux-common syslinux-efi mmdebstrap python3-venv curl iproute2 openssh-client bash-completion procps"
).split()
MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# Units that cannot work in this container (no rpc_pipefs in this kernel) or take the dpkg lock during tests.
MASKED = ["run-rpc_pipefs.mount", "apt-daily.timer", "apt-daily-upgrade.timer"]


def _dependencies() -> list[str]:
    """Kestrel's install_requires (setup.cfg, one place) and its build backend."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options"]["install_requires"].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")] + [
        "setuptools>=61",
        "wheel",
    ]


DEPENDENCIES = _dependencies()


def cached_root() -> Path:
    """The bootstrapped root for this package list, built on first use (about 35 s)."""
    key = hashlib.sha256(" ".join(PACKAGES + MIRRORS + MASKED).encode()).hexdigest()[:12]
    root = cache_dir(Sysroot("/")) / "frontend-root" / key
    if (root / "usr/bin/systemctl").exists():
        return root
    tmp = root.with_name(f".{key}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    hook = 'echo kfrontend > "$1/etc/hostname"; ' + "; ".join(
        f'ln -sf /dev/null "$1/etc/systemd/system/{unit}"' for unit in MASKED
    )
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={','.join(PACKAGES)}"]
        + ["--dpkgopt=path-exclude=/usr/share/doc/*", f"--customize-hook={hook}", "bookworm", str(tmp), *MIRRORS],
        check=True,
        capture_output=True,
    )
    (tmp / "etc/resolv.conf").write_text("")  # mmdebstrap copies the host's
    tmp.rename(root)
    return root


def wheelhouse() -> Path:
    """Kestrel's dependencies (and its build backend) as wheels, for pip inside the container."""
    folder = cache_dir(Sysroot("/")) / "frontend-wheelhouse"
    wanted = "\n".join(DEPENDENCIES) + "\n"  # a new dependency makes it download again
    done = folder / ".complete"
    if not done.exists() or done.read_text() != wanted:
        folder.mkdir(parents=True, exist_ok=True)
        pip = [str(REPO / ".venv/bin/python"), "-m", "pip", "download", "-q", "-d", str(folder)]
        subprocess.run(pip + DEPENDENCIES, check=True, capture_output=True)
        done.write_text(wanted)
    return folder


@dataclass
class Container:
    """The booted container: ROOT is its / seen from the host, LEADER its systemd (PID 1 inside)."""

    root: Path
    process: subprocess.Popen[bytes]
    leader: int
    cgroup: str

    def argv(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", *argv]

    def run(
        self, *argv: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """ARGV inside, as root there, with a server's PATH; CHECK: exit 0 or the test fails with its output."""
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        full = self.argv(
            "env", "-i", f"PATH={path}", "HOME=/root", *(f"{k}={v}" for k, v in (env or {}).items()), *argv
        )
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc


def boot(netns: str, root: Path, cgroup: str) -> Container:
    """systemd-nspawn --boot of ROOT inside NETNS, until systemd says the system is running."""
    os.makedirs(f"/sys/fs/cgroup/systemd/{cgroup}", exist_ok=True)
    os.makedirs(f"/sys/fs/cgroup/unified/{cgroup}", exist_ok=True)
    # --keep-unit makes nspawn's cgroups under its caller's: the launcher moves itself into one of its own first
    script = 'for c in systemd unified; do echo $$ > "/sys/fs/cgroup/$c/$1/cgroup.procs"; done; shift; exec "$@"'
    nspawn = [
        "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "-q", "-D", str(root), "-M", "kfrontend",
        f"--network-namespace-path=/run/netns/{netns}", "--capability=CAP_NET_ADMIN",
        "--system-call-filter=open_by_handle_at name_to_handle_at",
    ]  # fmt: skip
    process = subprocess.Popen(
        ["sh", "-c", script, "sh", cgroup, *nspawn],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    state = "not started"
    while time.monotonic() < deadline:
        assert process.poll() is None, f"systemd-nspawn exited {process.returncode}"
        leader = _child_systemd(process.pid)
        if leader:
            box = Container(root, process, leader, cgroup)
            # systemctl answers once systemd listens on its private socket; is-system-running then says the rest
            state = box.run("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
            if state == "running":
                return box
            assert state != "degraded", box.run("systemctl", "--failed", check=False).stdout
        time.sleep(0.3)
    raise AssertionError(f"the container's systemd is {state} after 60 s")


def _child_systemd(pid: int) -> int | None:
    """The systemd that nspawn (a child of PID, the launcher shell exec'ed into nspawn) started."""
    found = subprocess.run(["pgrep", "-P", str(pid), "-x", "systemd"], capture_output=True, text=True)
    return int(found.stdout.split()[0]) if found.stdout.split() else None


def shut_down(box: Container) -> None:
    """poweroff inside, nspawn exits; then the cgroups it left, deepest first."""
    if box.process.poll() is None:
        box.run("systemctl", "poweroff", check=False, timeout=30)
        try:
            box.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(box.process.pid, 9)
            box.process.wait(timeout=10)
    for hierarchy in ("systemd", "unified"):
        base = Path(f"/sys/fs/cgroup/{hierarchy}/{box.cgroup}")
        for folder in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            folder.rmdir()
        if base.is_dir():
            base.rmdir()


@contextlib.contextmanager
def frontend(work: Path, ipv6: str | None = None) -> Iterator[tuple[Topology, Container, str, str]]:
    """A fresh copy of the cached root under WORK, with this repository (tracked files, as an admin clones it) in
    /root/kestrel and the wheelhouse in /root/wheelhouse, booted on the bridge (10.10.0.1/24, and IPV6 if given)
    of a new kt- namespace: (topology, container, bridge, namespace). Everything goes at the end."""
    root = work / "root"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(cached_root()), str(root)], check=True)
    _copy_repository(root / "root/kestrel")
    subprocess.run(["cp", "-r", str(wheelhouse()), str(root / "root/wheelhouse")], check=True)
    topo = Topology(prefix=f"kt-{secrets.token_hex(2)[:3]}")
    box = None
    try:
        fe = topo.add_netns("fe")
        bridge = topo.add_bridge(fe, "br", "10.10.0.1/24")
        if ipv6:
            subprocess.run(["ip", "-n", fe, "addr", "add", ipv6, "dev", bridge, "nodad"], check=True)
        box = boot(fe, root, topo.name("cg"))
        yield topo, box, bridge, fe
    finally:
        if box is not None:
            shut_down(box)
        problems = topo.destroy()
        assert not problems, problems


def _copy_repository(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src, dst = REPO / name, target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        elif src.is_file():
            dst.write_bytes(src.read_bytes())
            dst.chmod(src.stat().st_mode & 0o777)
