"""The real default image from the Debian mirror (mmdebstrap): kernel, small initrd with the overlay
script, sshd with the frontend's key, both MPIs, boot menu + NFS export; a forced rebuild reuses the
cached base; kestrel-apt and kestrel-reconfigure --image make new versions.

The base and the apt archives are cached in /var/cache/kestrel (or $KESTREL_CACHE_DIR), outside the
test's tree, so later runs on this machine skip the bootstrap (~60 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kestrel import runner
from kestrel.images import chroot
from kestrel.sysroot import Sysroot
from tests.conftest import need_root

BIN = Path(sys.executable).parent
CACHE = os.environ.get("KESTREL_CACHE_DIR", "/var/cache/kestrel")


def kestrel(program: str, root: Sysroot, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KESTREL_CACHE_DIR=CACHE)
    out = subprocess.run(
        [str(BIN / program), "--root", str(root.root), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def current(root: Sysroot) -> dict:
    return json.loads(root.path("/var/lib/kestrel/images/default.json").read_text())


def test_default_debian_image(tree: Sysroot) -> None:
    need_root()
    root = tree
    root.path("/etc/kestrel/images/default.yaml").write_text(
        "from: debian-bookworm\nmodules: [core, nfsroot, sshd, openmpi, mpich]\n"
    )
    first = kestrel("kestrel-images", root, "build", "default")
    m = current(root)
    image = root.path(m["root"])
    assert m["kernel"] == f"images/default/{m['version']}/vmlinuz" and m["kernel_version"].endswith("-amd64")
    for boot_root in ("/srv/kestrel/http", "/srv/kestrel/tftp"):
        for rel in (m["kernel"], m["initrd"]):
            assert root.path(f"{boot_root}/{rel}").stat().st_size > 1_000_000
    in_image = f"/boot/initrd.img-{m['kernel_version']}"
    assert (image / in_image.lstrip("/")).read_bytes() == root.path(f"/srv/kestrel/tftp/{m['initrd']}").read_bytes()
    listing = image / "tmp/initrd-listing"
    with open(listing, "wb") as out:
        runner.run(["lsinitramfs", in_image], via=chroot.Chroot(image), output=out)
    initrd = listing.read_text()
    listing.unlink()
    for need in ("scripts/nfs-bottom/rootovl", "virtio_pci.ko", "virtio_net.ko", "overlay.ko", "nfsv3.ko"):
        assert need in initrd, need
    assert root.path(f"/srv/kestrel/http/{m['initrd']}").stat().st_size < 15_000_000  # MODULES=list
    assert "BOOT=nfs" in (image / "etc/initramfs-tools/conf.d/kestrel").read_text()
    for program in ("usr/sbin/sshd", "usr/bin/mpirun.openmpi", "usr/bin/mpiexec.hydra", "sbin/init"):
        assert (image / program).exists(), program
    assert (image / "root/.ssh/authorized_keys").read_text() == root.path("/root/.ssh/id_ed25519.pub").read_text()
    assert not (image / "etc/hostname").exists()
    assert os.readlink(image / "etc/systemd/system/apt-daily.timer") == "/dev/null"
    assert not list((image / "var/lib/apt/lists").glob("*_Packages*"))
    ipxe = root.path("/srv/kestrel/http/boot/default.ipxe").read_text()
    assert f"nfsroot=10.10.0.1:{root.sys(m['root'])}" in ipxe and m["kernel"] in ipxe
    assert root.sys(m["root"]) in root.path("/etc/exports.d/kestrel.exports").read_text()
    assert chroot.mounts_under(root.root) == []
    host_keys = sorted(p.read_bytes() for p in (image / "etc/ssh").glob("ssh_host_*_key"))

    # a forced rebuild starts again from the cached base: no bootstrap
    second = kestrel("kestrel-images", root, "build", "default", "--force")
    assert f"Using cached base {m['base']}" in second.stderr and "Bootstrapping" not in second.stderr
    m2 = current(root)
    assert m2["version"] != m["version"] and m2["base"] == m["base"]
    # host keys are stable per image across rebuilds
    assert sorted(p.read_bytes() for p in (root.path(m2["root"]) / "etc/ssh").glob("ssh_host_*_key")) == host_keys
    assert "Bootstrapping" in first.stderr or f"Using cached base {m['base']}" in first.stderr

    # kestrel-apt: a new version with the package, then configure ran
    apt = kestrel("kestrel-apt", root, "default", "install", "--no-install-recommends", "hello")
    assert "Executing : image_core_system" in apt.stderr
    m3 = current(root)
    assert (root.path(m3["root"]) / "usr/bin/hello").exists()
    assert not (root.path(m2["root"]) / "usr/bin/hello").exists()

    # kestrel-reconfigure --image: configure only (install phases are done)
    again = kestrel("kestrel-reconfigure", root, "--image", "default")
    assert "Executing : image_core_set-hostname_chroot" in again.stderr
    assert "image_nfsroot_initramfs" not in again.stderr
    # ... which changed nothing in the image: no new version (the versions to roll back to stay)
    assert f"default unchanged: version {m3['version']} stays current, nothing published" in again.stderr
    assert current(root) == m3
    assert chroot.mounts_under(root.root) == []


def test_debootstrap_base_via_sh_is_up_to_date(tree: Sysroot) -> None:
    """The debootstrap method (sh /usr/sbin/debootstrap): a base with the day's fixes and no docs; no kernel
    in this image (modules: [core]), so it builds with the warning."""
    need_root()
    root = tree
    root.path("/etc/kestrel/images/plain.yaml").write_text(
        "from: debian-bookworm\nmodules: [core]\nbootstrap:\n  method: debootstrap\n"
    )
    out = kestrel("kestrel-images", root, "build", "plain", timeout=1800)
    m = json.loads(root.path("/var/lib/kestrel/images/plain.json").read_text())
    made = "Bootstrapping bookworm (debootstrap, minbase)" in out.stderr
    assert made or f"Using cached base {m['base']}" in out.stderr
    assert "Warning: plain has no kernel with an initrd in /boot" in out.stderr and m["kernel"] is None
    image = root.path(m["root"])
    assert (image / "etc/debian_version").read_text().startswith("12.") and (image / "usr/sbin/ethtool").exists()
    doc = image / "usr/share/doc/libc6"
    assert (doc / "copyright").exists() and not (doc / "changelog.gz").exists()
    assert "bookworm-security" in (image / "etc/apt/sources.list").read_text()
    # nothing left to upgrade: debootstrap's release packages were brought up to -updates and -security
    report = image / "tmp/upgrade-report"
    with open(report, "wb") as f:
        for argv in (["apt-get", "update"], ["apt-get", "-s", "dist-upgrade"]):
            runner.run(argv, via=chroot.Chroot(image, Path(CACHE) / "apt-archives"), output=f)
    text = report.read_text()
    report.unlink()
    assert "0 upgraded, 0 newly installed" in text, text[-2000:]
