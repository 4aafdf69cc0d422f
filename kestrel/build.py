"""The image build pipeline: staging tree -> base -> phases -> boot files -> atomic publish -> frontend plan."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kestrel import bootstrap, chroot, phases, runner
from kestrel.config import Config, ImageDefinition
from kestrel.errors import InputError, KestrelError
from kestrel.frontend import reconfigure_frontend
from kestrel.images import (
    BOOT_DIRS,
    boot_dir,
    current,
    image_modules,
    load_definition,
    publish,
    tree_size,
    versions_dir,
)
from kestrel.sysroot import Sysroot

Say = Callable[[str], None]


def definition_digest(definition: ImageDefinition, modules: list[str]) -> str:
    text = definition.model_dump_json() + repr(modules)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_image(root: Sysroot, config: Config, config_path: Path, name: str, *, force: bool = False,
                use_cache: bool = True, say: Say = print) -> dict[str, Any]:
    """Build NAME: from the current version when its definition is unchanged (only changed scripts and
    configure run), else (or with FORCE) from the cached base. Publishes and replans the frontend."""
    definition = load_definition(root, name)
    modules = image_modules(definition, config.modules)
    digest = definition_digest(definition, modules)
    now = current(root, name)
    if now and not force and now.get("definition") == digest and root.path(now["root"]).is_dir():
        say(f"Updating {name} from version {now['version']} (its definition is unchanged; --force rebuilds)")
        source, base = root.path(now["root"]), now.get("base")

        def fill(staging: Path) -> str | None:
            return _copy(source, staging, base)
    else:
        def fill(staging: Path) -> str | None:
            return bootstrap.bootstrap(root, definition, staging, use_cache=use_cache, say=say,
                                       log=root.path(f"{phases.LOG_DIR}/images/{name}/bootstrap.log"))
    return _new_version(root, config, config_path, name, definition, modules, digest, fill, say=say)


def update_image(root: Sysroot, config: Config, config_path: Path, name: str, *, force: bool = False,
                 apt_steps: list[list[str]] | None = None, say: Say = print) -> dict[str, Any]:
    """A new version of NAME from its current one: `apt-get STEP` for each of APT_STEPS first, then the run-once
    phases whose scripts changed or never ran (all of them with FORCE), then configure."""
    now = current(root, name)
    if now is None:
        raise InputError(f"image '{name}' is not built yet: run kestrel-images build {name}")
    definition = load_definition(root, name)
    modules = image_modules(definition, config.modules)
    source = root.path(now["root"])

    def fill(staging: Path) -> str | None:
        _copy(source, staging, None)
        if apt_steps:
            _apt(root, name, staging, apt_steps, say)
        return now.get("base")
    return _new_version(root, config, config_path, name, definition, modules, now.get("definition", ""), fill,
                        force=force, say=say)


def _copy(source: Path, staging: Path, base: str | None) -> str | None:
    bootstrap.copy_tree(source, staging)
    return base


def _apt(root: Sysroot, name: str, staging: Path, steps: list[list[str]], say: Say) -> None:
    log = root.path(f"{phases.LOG_DIR}/images/{name}/apt.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    target = phases.Target(root, Config(), [], say, image=name, image_root=staging)
    with open(log, "wb") as out, phases.image_guard(target):
        for args in [["update"], *steps]:
            say(f"Executing : image_apt-get {' '.join(args)}")
            argv = ["apt-get", "-y", *phases.APT_OPTIONS, *args]
            proc = chroot.run(staging, argv, env=env, output=out, apt_cache=bootstrap.apt_cache(root),
                              timeout=phases.SCRIPT_TIMEOUT)
            if proc.returncode != 0:
                raise phases.ScriptFailed(f"apt-get {' '.join(args)} failed: {runner.how_it_ended(proc.returncode)}; "
                                          f"last lines of {log}:\n{phases.log_tail(log)}")
    phases.drop_apt_indexes(staging)


def _new_version(root: Sysroot, config: Config, config_path: Path, name: str, definition: ImageDefinition,
                 modules: list[str], digest: str, fill: Callable[[Path], str | None], *, force: bool = False,
                 say: Say) -> dict[str, Any]:
    started = time.monotonic()
    folder = root.path(versions_dir(name))
    with _build_lock(root, name):
        for stale in folder.glob(".staging-*") if folder.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)
        version = _new_version_id(root, name)
        staging = folder / f".staging-{version}"
        try:
            base = fill(staging)
            target = phases.Target(root, config, modules, say, image=name, image_root=staging,
                                   apt_cache=bootstrap.apt_cache(root), extra_packages=list(definition.packages))
            phases.run_phases(target, force=force)
            chroot.assert_unmounted(staging)
            kernel, initrd, kernel_version = copy_boot_files(root, name, version, staging, say)
            staging.rename(folder / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for boot_root in BOOT_DIRS:
                shutil.rmtree(root.path(boot_dir(boot_root, name, version)), ignore_errors=True)
            raise
        manifest = {
            "name": name, "version": version, "root": f"{versions_dir(name)}/{version}",
            "kernel": kernel, "initrd": initrd, "kernel_version": kernel_version, "cmdline": definition.cmdline,
            "built": datetime.now(UTC).isoformat(timespec="microseconds"), "modules": modules,
            "size": tree_size(folder / version), "definition": digest, "base": base,
        }
        publish(root, manifest, say)
    say(f"Published {name} version {version} in {time.monotonic() - started:.1f} s")
    reconfigure_frontend(root, config, config_path, say=say)
    return manifest


def _new_version_id(root: Sysroot, name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    version, n = stamp, 1
    while root.path(f"{versions_dir(name)}/{version}").exists():
        n += 1
        version = f"{stamp}-{n}"
    return version


def _kernel_sort_key(version: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def find_kernel(image_root: Path) -> tuple[Path, Path, str] | None:
    """The newest /boot/vmlinuz-VERSION that has its initrd.img-VERSION, as (kernel, initrd, VERSION)."""
    found = []
    for kernel in (image_root / "boot").glob("vmlinuz-*"):
        version = kernel.name[len("vmlinuz-"):]
        initrd = kernel.with_name(f"initrd.img-{version}")
        if initrd.is_file():
            found.append((kernel, initrd, version))
    return max(found, key=lambda f: _kernel_sort_key(f[2])) if found else None


def copy_boot_files(root: Sysroot, name: str, version: str, image_root: Path,
                    say: Say) -> tuple[str | None, str | None, str | None]:
    """Kernel and initrd into the http and tftp roots (readable by nginx and dnsmasq); None without a kernel."""
    found = find_kernel(image_root)
    if found is None:
        say(f"Warning: {name} has no kernel with an initrd in /boot: it cannot be network-booted "
            "(built anyway; add the nfsroot module to boot it)")
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


@contextmanager
def _build_lock(root: Sysroot, name: str) -> Iterator[None]:
    """One build of an image at a time (not the global lock: DHCP's lease hook must not wait for a build)."""
    path = root.path(f"/var/lib/kestrel/images/{name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KestrelError(f"another build of '{name}' is running (lock {path})") from None
        yield
    finally:
        os.close(fd)
