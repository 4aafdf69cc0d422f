"""The crash campaign: kill -9 at random moments of `kestrel-nodes --register` (thousands of leases) and
`kestrel-reconfigure --frontend` (thousands of per-node boot menus), then a rerun. Every file must be old or new
after the kill (never torn), the rerun must heal everything (files as an uninterrupted run leaves them, owed
reloads replayed, no temp file left), the admin's text outside Kestrel's block byte-identical, /etc/hosts still
the admin's symlink, and the registry accepted by `dnsmasq --test`. KESTREL_CRASH_SEED=N replays a run."""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kestrel.frontend import services
from kestrel.sysroot import TEMP_SUFFIX
from tests.conftest import REPO

LEASES = 2000
KILLS = {"register": 28, "reconfigure": 24}
ADMIN_HOSTS = b"127.0.0.1 localhost\n192.168.1.1 router  # the admin's, no final newline"
SKIP = {"var/lib/kestrel/lock", services.PENDING_PATH.lstrip("/")}


def config(method: str) -> str:
    return json.dumps(
        {
            "network": {"address": "10.20.0.1/16", "dhcp_range": ["10.20.100.1", "10.20.199.254"]},
            "boot": {"method": method},
            "nodes": {"name_pattern": "n{index:04d}"},
        }
    )


def program(root: Path, name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"kestrel.cli.{name}", "--root", str(root), *args]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}


def files(root: Path) -> dict[str, bytes]:
    """Every regular file under ROOT by path (links are checked apart), without the lock, owed actions and temp
    files (counted apart)."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if rel not in SKIP and not name.endswith(TEMP_SUFFIX) and not path.is_symlink() and path.is_file():
                out[rel] = path.read_bytes()
    return out


def temps(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob(f"*{TEMP_SUFFIX}")]


Trees = dict[str, tuple[Path, dict[str, bytes], list[str], float]]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Trees:
    """For each program: a saved copy of the tree before it runs, the files after an uninterrupted run, its argv
    and how long that run took. Every tree is rendered at the same place (WORK, where the trials run too): the
    files Kestrel writes name paths under the root, so a tree rendered elsewhere would differ in those."""
    base = tmp_path_factory.mktemp("crash")
    work = base / "work"
    leases = base / "dnsmasq.leases"
    leases.write_text(
        "".join(
            f"1795000000 52:54:01:{i >> 8 & 255:02x}:{i & 255:02x}:01 10.20.{100 + i // 250}.{1 + i % 250} * *\n"
            for i in range(LEASES)
        )
    )
    # register: a rendered frontend, no node yet; /etc/hosts the admin's symlink to a file of their own.
    shutil.copytree(REPO / "etc-kestrel", work / "etc/kestrel")
    (work / "etc/kestrel/kestrel.yaml").write_text(config("ipxe-http"))
    (work / "etc/hosts.admin").write_bytes(ADMIN_HOSTS)
    os.chown(work / "etc/hosts.admin", 4321, 4321)
    (work / "etc/hosts").symlink_to("hosts.admin")
    subprocess.run(program(work, "reconfigure", "--frontend"), check=True, env=env(), capture_output=True)
    out = {
        "register": uninterrupted(
            work, base / "register-before", "nodes", "--register", "--no-verify", "--leases", str(leases)
        )
    }
    # reconfigure: the registered tree switched to pxelinux, so every node gets a boot menu of its own.
    (work / "etc/kestrel/kestrel.yaml").write_text(config("pxelinux"))
    out["reconfigure"] = uninterrupted(work, base / "reconfigure-before", "reconfigure", "--frontend")
    return out


def uninterrupted(work: Path, saved: Path, *argv: str) -> tuple[Path, dict[str, bytes], list[str], float]:
    """Saves WORK as it is before ARGV runs, then runs ARGV to the end in it."""
    shutil.copytree(work, saved, symlinks=True)
    started = time.monotonic()
    subprocess.run(program(work, *argv), check=True, env=env(), capture_output=True)
    return saved, files(work), list(argv), time.monotonic() - started


def restore(saved: Path, work: Path) -> None:
    shutil.rmtree(work)
    shutil.copytree(saved, work, symlinks=True)
    os.chown(work / "etc/hosts.admin", 4321, 4321)  # copytree keeps modes, not owners


def registry_passes_dnsmasq_test(root: Path) -> bool:
    lines = (root / "etc/kestrel/nodes").read_text().splitlines()
    hosts = "".join(f"dhcp-host={line}\n" for line in lines if line and not line.startswith("#"))
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        conf.write(hosts)
        conf.flush()
        proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf.name}"], capture_output=True, text=True)
    return proc.returncode == 0 and len(lines) > LEASES


def test_kills_never_tear_a_file_and_a_rerun_heals(trees: Trees) -> None:
    seed = int(os.environ.get("KESTREL_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ncrash seed: {seed} (KESTREL_CRASH_SEED={seed} replays this run)")
    r = random.Random(seed)
    figures: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    work = trees["register"][0].parent / "work"
    for which, count in KILLS.items():
        before, expected, argv, seconds = trees[which]
        old = files(before)
        for trial in range(count):
            restore(before, work)
            proc = subprocess.Popen(program(work, *argv), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # Most of a run is the interpreter starting and planning: aim most kills at its later part.
            time.sleep(seconds * (r.uniform(0.3, 1.05) if r.random() < 0.8 else r.uniform(0, 0.3)))
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
            figures["kills"] += 1
            figures["ran to the end before the kill"] += proc.returncode == 0
            where = f"{which} trial {trial}"
            now = files(work)
            torn = [p for p, data in now.items() if data != old.get(p) and data != expected.get(p)]
            left = temps(work)
            figures["torn"] += bool(torn)
            figures["temp files left by the kill"] += len(left)
            figures["reload owed after the kill"] += (work / services.PENDING_PATH.lstrip("/")).exists()
            rerun = subprocess.run(program(work, *argv), env=env(), capture_output=True, text=True)
            healed = files(work)
            unhealed = sorted(p for p in healed.keys() | expected.keys() if healed.get(p) != expected.get(p))
            checks = {
                "rerun failed": rerun.returncode != 0,
                f"torn {torn[:3]}": bool(torn),
                f"unhealed {unhealed[:3]}": bool(unhealed),
                f"temp files left {temps(work)[:3]}": bool(temps(work)),
                "owed actions not replayed": (work / services.PENDING_PATH.lstrip("/")).exists(),
                "/etc/hosts no longer the admin's symlink": os.readlink(work / "etc/hosts") != "hosts.admin",
                "text outside the block changed": not (work / "etc/hosts.admin").read_bytes().endswith(ADMIN_HOSTS),
                "owner of /etc/hosts lost": (work / "etc/hosts.admin").stat().st_uid != 4321,
                "registry refused by dnsmasq --test": not registry_passes_dnsmasq_test(work),
            }
            figures["unhealed after rerun"] += bool(unhealed)
            figures["temp files left after rerun"] += len(temps(work))
            bad = [what for what, failed in checks.items() if failed]
            if bad:
                failures.append(
                    f"{where} ({len(left)} temp files after the kill): {'; '.join(bad)} {rerun.stderr[-300:]}"
                )
    print("crash figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert figures["kills"] >= 50
    assert not failures, f"seed {seed}:\n" + "\n".join(failures[:20])
