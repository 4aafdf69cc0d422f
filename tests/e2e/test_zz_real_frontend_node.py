"""A node boots from a real frontend: the lab's image served by Debian's dnsmasq, nginx and nfs-ganesha under
systemd (the container of tests/integration/test_real_frontend.py, installed by the README's command), and a
qemu node PXE-boots from it, registers through the lease hook of Debian's dnsmasq unit and answers SSH.

It runs last: its third emulated qemu on a 2-core machine starves the lab's two for minutes (SSH probes time out,
slurmctld finds them not responding), which the status and Slurm tests must not see."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import eventually
from tests.e2e.lab import BIN, ROOT
from tests.integration import frontend_container as fc

VM = "kt-rfnode"


def _copy_image(lab_root: Path, frontend: Path) -> str:
    """The lab's current default image, hard-linked (versions are never written in place) with its manifests and
    boot files, and the lab's root key that the image authorises."""
    manifest = json.loads((lab_root / "var/lib/kestrel/images/default.json").read_text())
    version, image_root = manifest["version"], manifest["root"].lstrip("/")
    (frontend / image_root).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(lab_root / image_root), str(frontend / image_root)], check=True)
    link = "srv/kestrel/images/default"
    (frontend / link).symlink_to((lab_root / link).readlink())
    shutil.copytree(lab_root / "var/lib/kestrel/images", frontend / "var/lib/kestrel/images", dirs_exist_ok=True)
    for web in ("http", "tftp"):
        boot = f"srv/kestrel/{web}/images/default/{version}"
        shutil.copytree(lab_root / boot, frontend / boot)
    ssh = frontend / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    for name in ("id_ed25519", "id_ed25519.pub"):
        shutil.copy2(lab_root / "root/.ssh" / name, ssh / name)
    return version


def test_a_node_boots_from_a_systemd_frontend(lab: str, tmp_path: Path) -> None:
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/root/wheelhouse"}
    with fc.frontend(tmp_path / "frontend", ipv6="fd10::1/64") as (_, box, bridge, fe):
        _copy_image(ROOT, box.root)
        box.run("/root/kestrel/setup.sh", "--frontend", env=offline)
        config = box.root / "etc/kestrel/kestrel.yaml"
        text = config.read_text().replace("interface: eth1 ", f"interface: {bridge} ")
        config.write_text(text.replace("# ipv6_prefix: fd10::/64", "ipv6_prefix: fd10::/64"))
        box.run("kestrel-reconfigure", "--frontend")
        assert box.run("kestrel", "doctor", check=False).returncode == 0, box.run(
            "kestrel", "doctor", check=False
        ).stdout

        host = tmp_path / "vms"  # the VM's record and console, on this machine's side
        (host / "etc/kestrel").mkdir(parents=True)
        (host / "etc/kestrel/kestrel.yaml").write_text(f"network: {{interface: {bridge}, netns: {fe}}}\n")
        vm = [str(BIN / "kestrel-vm"), "--root", str(host)]
        subprocess.run([*vm, "start", VM, "--kvm", "no"], check=True, capture_output=True)
        try:
            registry = box.root / "etc/kestrel/nodes"
            assert eventually(lambda: ",node01" in registry.read_text(), 180), _console(host)
            ip = registry.read_text().strip().split(",")[-2]
            ssh = [
                "ip",
                "netns",
                "exec",
                fe,
                "ssh",
                "-i",
                str(box.root / "root/.ssh/id_ed25519"),
                "-o",
                "BatchMode=yes",
            ]
            ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"]

            def answers() -> bool:
                proc = subprocess.run([*ssh, f"root@{ip}", "hostname"], capture_output=True, text=True, timeout=30)
                return proc.stdout.strip() == "node01"

            # 600 s as kestrel-lab up --timeout: a TCG boot on a shared machine took up to 240 s from its lease
            assert eventually(answers, 600, interval=5), _console(host)
        finally:
            subprocess.run([*vm, "stop", VM, "--remove"], check=False, capture_output=True)


def _console(host: Path) -> str:
    console = host / f"var/log/kestrel/vm-{VM}.console"
    return console.read_text(errors="replace")[-3000:] if console.exists() else "no console"
