"""A version's kernel and initrd: found in its /boot, copied into the http and tftp roots the nodes boot from."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from kestrel.images.store import BOOT_DIRS, boot_dir
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)


def _kernel_sort_key(version: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def find_kernel(image_root: Path) -> tuple[Path, Path, str] | None:
    """The newest /boot/vmlinuz-VERSION that has its initrd.img-VERSION, as (kernel, initrd, VERSION)."""
    found = []
    for kernel in (image_root / "boot").glob("vmlinuz-*"):
        version = kernel.name[len("vmlinuz-") :]
        initrd = kernel.with_name(f"initrd.img-{version}")
        if initrd.is_file():
            found.append((kernel, initrd, version))
    return max(found, key=lambda f: _kernel_sort_key(f[2])) if found else None


def copy_boot_files(
    root: Sysroot, name: str, version: str, image_root: Path
) -> tuple[str | None, str | None, str | None]:
    """Kernel and initrd into the http and tftp roots (readable by nginx and dnsmasq); None without a kernel."""
    found = find_kernel(image_root)
    if found is None:
        logger.warning(
            f"{name} has no kernel with an initrd in /boot: it cannot be network-booted "
            "(built anyway; add the nfsroot module to boot it)"
        )
        return None, None, None
    kernel, initrd, kernel_version = found
    rel = f"images/{name}/{version}"
    for boot_root in BOOT_DIRS:
        folder = root.path(boot_dir(boot_root, name, version))
        folder.mkdir(parents=True, exist_ok=True)
        for source, target in ((kernel, "vmlinuz"), (initrd, "initrd.img")):
            shutil.copyfile(source, folder / target)
            os.chmod(folder / target, 0o644)
    return f"{rel}/vmlinuz", f"{rel}/initrd.img", kernel_version
