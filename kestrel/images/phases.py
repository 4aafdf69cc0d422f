"""Phase scripts: discovery with same-name admin overrides, module filter, order, run-once state, execution."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from kestrel import runner, shipped
from kestrel.config import Config, check_package
from kestrel.errors import InputError, KestrelError
from kestrel.images import chroot
from kestrel.overrides import Origin, merge_by_name
from kestrel.sysroot import Sysroot, atomic_write

logger = logging.getLogger(__name__)

SHIPPED_DIR = shipped.PHASES
PHASES = ("install", "packages", "post-install", "configure")
RUN_ONCE = frozenset(PHASES[:3])
IMAGE_STATE = "/var/lib/kestrel/image-phases.json"  # inside the image: travels with its copies
FRONTEND_STATE = "/var/lib/kestrel/frontend-phases.json"
LOG_DIR = "/var/log/kestrel"
SCRIPT_TIMEOUT = 3600.0
TAIL_LINES = 15
APT_OPTIONS = ["-o", "Dpkg::Options::=--force-confold", "-o", "Dpkg::Options::=--force-unsafe-io",
               "-o", "DPkg::Lock::Timeout=600"]


class Side(StrEnum):
    FRONTEND = "frontend"
    NODE = "node"


class ScriptFailed(KestrelError):
    """A phase script failed: the build stops."""


@dataclass(frozen=True)
class Script:
    phase: str
    name: str
    path: Path
    origin: Origin

    @property
    def module(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def in_chroot(self) -> bool:
        return self.name.endswith("_chroot")

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.name}"

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


_SCRIPT_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*_[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_script_name(path: Path) -> str:
    """`<module>_<name>[_chroot]`: the module part is a plain name, the rest is not empty."""
    if not _SCRIPT_NAME.fullmatch(path.name) or path.name.partition("_")[2] == "chroot":
        raise InputError(f"{path}: a phase script is named MODULE_NAME or MODULE_NAME_chroot "
                         "(a-z, 0-9, '-', '.'; then '_' and the name); rename it")
    return path.name


def discover(root: Sysroot, side: Side, phase: str, shipped: Path = SHIPPED_DIR) -> list[Script]:
    """Every script of PHASE, shipped and admin, merged by name, in lexical order (no module filter)."""
    entries = merge_by_name(shipped / side / f"{phase}.d", root.path(f"/etc/kestrel/{side}/{phase}.d"))
    return [Script(phase, check_script_name(e.path), e.path, e.origin) for e in entries]


def effective(root: Sysroot, side: Side, phase: str, modules: list[str], shipped: Path = SHIPPED_DIR) -> list[Script]:
    """The scripts of PHASE that run: only those of enabled MODULES."""
    return [s for s in discover(root, side, phase, shipped) if s.module in modules]


def want_run(script: Script, state: dict[str, str], force: bool) -> bool:
    """configure always; install, packages, post-install when forced, never run, or changed since."""
    return script.phase not in RUN_ONCE or force or state.get(script.key) != script.digest()


def read_package_list(script: Script) -> list[str]:
    """A packages.d file: one package a line, '#' comments."""
    found = []
    for number, line in enumerate(script.path.read_text().splitlines(), 1):
        for word in line.split("#", 1)[0].split():
            try:
                found.append(check_package(word))
            except ValueError as e:
                raise InputError(f"{script.path}:{number}: {e}") from None
    return found


def load_state(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise InputError(f"{path}: not a phase state file: {e}") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_state(path: Path, state: dict[str, str]) -> None:
    atomic_write(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def script_env(config: Config, root: Sysroot, phase: str, image: str | None, image_root: str | None) -> dict[str, str]:
    """The documented KESTREL_* environment (plus a plain PATH and locale)."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root",
        "KESTREL_PHASE": phase,
        "KESTREL_ROOT": str(root.root),
        "KESTREL_CONFIG_JSON": config.to_json(),
        "KESTREL_FRONTEND_IP": str(config.network.ip),
        "KESTREL_NETWORK": str(config.network.network),
        "KESTREL_DOMAIN": config.cluster.domain,
        # the interpreter Kestrel runs under: frontend scripts may call its programs (python -m kestrel.cli.X)
        "KESTREL_PYTHON": sys.executable,
    }
    if image is not None and image_root is not None:
        env |= {"KESTREL_IMAGE": image, "KESTREL_IMAGE_ROOT": image_root}
    return env


@dataclass
class Target:
    """Where phase scripts act: one image root (node side) or the frontend itself."""

    root: Sysroot
    config: Config
    modules: list[str]
    image: str | None = None
    image_root: Path | None = None  # real path of the image tree being built or reconfigured
    apt_cache: Path | None = None
    extra_packages: list[str] = field(default_factory=list)
    shipped: Path = SHIPPED_DIR

    @property
    def side(self) -> Side:
        return Side.NODE if self.image else Side.FRONTEND

    @property
    def state_path(self) -> Path:
        if self.image_root is not None:
            return self.image_root / IMAGE_STATE.lstrip("/")
        return self.root.path(FRONTEND_STATE)

    def log_path(self, phase: str) -> Path:
        sub = f"images/{self.image}" if self.image else "frontend"
        return self.root.path(f"{LOG_DIR}/{sub}/{phase}.log")


def run_phases(target: Target, phases: tuple[str, ...] = PHASES, force: bool = False) -> None:
    """Run PHASES in order; run-once phases skip scripts already run with the same content."""
    state = load_state(target.state_path)
    with image_guard(target.image_root):
        for phase in phases:
            scripts = effective(target.root, target.side, phase, target.modules, target.shipped)
            if not scripts and not (phase == "packages" and target.extra_packages):
                continue
            log = target.log_path(phase)
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "wb") as out:
                if phase == "packages":
                    _run_packages(target, scripts, state, force, out)
                else:
                    for script in scripts:
                        if want_run(script, state, force):
                            _run_script(target, script, out, log)
                            if phase in RUN_ONCE:
                                state[script.key] = script.digest()
                                save_state(target.state_path, state)


def _run_script(target: Target, script: Script, out: IO[bytes], log: Path) -> None:
    logger.info(f"Executing : {'image' if target.image else 'frontend'}_{script.name}")
    out.write(f"==> {script.name} ({script.origin}: {script.path})\n".encode())
    out.flush()
    start = out.tell()
    if target.image_root is not None and script.in_chroot:
        env = script_env(target.config, target.root, script.phase, target.image, "/")
        proc = _chroot_script(target.image_root, script, env, out)
    else:
        image_root = str(target.image_root) if target.image_root is not None else None
        env = script_env(target.config, target.root, script.phase, target.image, image_root)
        if not os.access(script.path, os.X_OK):
            argv = ["sh", str(script.path)]
        else:
            argv = [str(script.path)]
        proc = runner.run(argv, env=env, check=False, output=out, timeout=SCRIPT_TIMEOUT)
    if not proc.ok:
        out.flush()
        raise ScriptFailed(f"{script.name} ({script.path}) failed: {proc.why()}; "
                           f"last lines of {log}:\n{log_tail(log, start)}")


def _chroot_script(image_root: Path, script: Script, env: dict[str, str],
                   out: IO[bytes]) -> runner.Result:
    """Copy the script into the image's /tmp, run it there, remove it."""
    inside = f"/tmp/.kestrel-{script.name}"
    real = image_root / inside.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(script.path, real)
    real.chmod(0o755)
    try:
        return runner.run([inside], via=chroot.Chroot(image_root), env=env, output=out, timeout=SCRIPT_TIMEOUT,
                          check=False)
    finally:
        real.unlink(missing_ok=True)


def _run_packages(target: Target, lists: list[Script], state: dict[str, str], force: bool,
                  out: IO[bytes]) -> None:
    """Every enabled list (plus the definition's packages) in one apt transaction, when one changed."""
    packages = packages_to_install(target, lists, state, force)
    if not packages:
        return
    prefix = "image" if target.image else "frontend"
    logger.info(f"Executing : {prefix}_packages ({len(packages)} packages in one apt transaction)")
    log = target.log_path("packages")
    start = out.tell()
    env = script_env(target.config, target.root, "packages", target.image, "/")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *APT_OPTIONS, *packages]
    update = ["apt-get", "update", *APT_OPTIONS[-2:]]
    steps = [update, install]
    if target.image_root is not None and target.apt_cache is not None and chroot.lists_fresh(target.apt_cache,
                                                                                             target.image_root):
        steps.remove(update)
        out.write(b"==> apt-get update skipped: the shared indexes were fetched for these sources moments ago\n")
    if target.image_root is not None:
        # A new kernel's postinst makes its initrd at once and the initramfs-tools trigger (busybox, klibc,
        # zstd in the same transaction) makes it again: INITRD=No skips the first, one run makes it after.
        env["INITRD"] = "No"
        steps.append(["sh", "-c", _MISSING_INITRDS])
    for argv in steps:
        out.write(f"==> {' '.join(argv)}\n".encode())
        out.flush()
        if target.image_root is not None:
            proc = runner.run(argv, via=chroot.Chroot(target.image_root, target.apt_cache), env=env, output=out,
                              timeout=SCRIPT_TIMEOUT, check=False)
        elif target.root.is_host:
            proc = runner.run(argv, env=env, check=False, output=out, timeout=SCRIPT_TIMEOUT)
        else:
            logger.info(f"Skipped frontend packages: {target.root.root} is not the host")
            return
        if proc.ok and argv is update and target.image_root is not None and target.apt_cache:
            chroot.mark_lists_fresh(target.apt_cache, target.image_root)
        if not proc.ok:
            what = argv[1] if argv[0] == "apt-get" else "update-initramfs after"
            raise ScriptFailed(f"packages ({what} of {' '.join(packages)}) failed: "
                               f"{proc.why()}; last lines of {log}:\n{log_tail(log, start)}")
    for s in lists:
        state[s.key] = s.digest()
    state[_DEFINITION_KEY] = _definition_digest(target)
    save_state(target.state_path, state)
    if target.image_root is not None:
        drop_apt_indexes(target.image_root)


_DEFINITION_KEY = "packages/definition"  # the run-once state of the image definition's own packages


def _definition_digest(target: Target) -> str:
    return hashlib.sha256(" ".join(sorted(target.extra_packages)).encode()).hexdigest()


def packages_to_install(target: Target, lists: list[Script], state: dict[str, str], force: bool) -> list[str]:
    """The packages phase's one transaction: every enabled list and the definition's packages, when a list or
    the definition's packages changed since (or with FORCE); empty when it has nothing to do."""
    changed = (force or any(want_run(s, state, False) for s in lists)
               or state.get(_DEFINITION_KEY) != _definition_digest(target))
    packages = sorted({p for s in lists for p in read_package_list(s)} | set(target.extra_packages))
    return packages if changed else []


# Every installed kernel without an initrd gets one (fixed text, no value interpolated).
_MISSING_INITRDS = """for k in /boot/vmlinuz-*; do
  [ -e "$k" ] || continue
  v=${k#/boot/vmlinuz-}
  [ -e "/boot/initrd.img-$v" ] || update-initramfs -c -k "$v"
done"""


def drop_apt_indexes(image_root: Path) -> None:
    """Package indexes are ~160 MiB a version and stale by the next build (kestrel-apt updates first)."""
    for path in (*(image_root / "var/lib/apt/lists").glob("*_*"), *(image_root / "var/cache/apt").glob("*.bin")):
        if path.is_file():
            path.unlink()


def log_tail(log: Path, start: int = 0, lines: int = TAIL_LINES) -> str:
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@contextmanager
def image_guard(image_root: Path | None) -> Iterator[None]:
    """While phases or apt run in an image: no service may start (policy-rc.d) and apt can resolve the mirror."""
    if image_root is None:
        yield
        return
    made = []
    policy = image_root / "usr/sbin/policy-rc.d"
    resolv = image_root / "etc/resolv.conf"
    if not policy.exists() and not policy.is_symlink():
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text("#!/bin/sh\n# kestrel: no service starts while the image is built\nexit 101\n")
        policy.chmod(0o755)
        made.append(policy)
    if not resolv.exists() and not resolv.is_symlink() and resolv.parent.is_dir():
        resolv.write_text("")
        made.append(resolv)
    try:
        yield
    finally:
        for path in made:
            # a script may have replaced it on purpose (core writes resolv.conf): keep a non-empty one
            if path == resolv and path.is_file() and path.stat().st_size:
                continue
            path.unlink(missing_ok=True)


def apt_get(image_root: Path, steps: list[list[str]], *, out: IO[bytes], log: Path, apt_cache: Path) -> None:
    """`apt-get -y ARGS` inside IMAGE_ROOT for each ARGS of STEPS, no service starting; output to OUT (the file
    LOG); ScriptFailed with LOG's tail at the first failing step."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    with image_guard(image_root):
        for args in steps:
            logger.info(f"Executing : image_apt-get {' '.join(args)}")
            out.write(f"==> apt-get {' '.join(args)}\n".encode())
            out.flush()
            proc = runner.run(["apt-get", "-y", *APT_OPTIONS, *args], via=chroot.Chroot(image_root, apt_cache), env=env,
                              output=out, timeout=SCRIPT_TIMEOUT, check=False)
            if not proc.ok:
                raise ScriptFailed(f"apt-get {' '.join(args)} failed: {proc.why()}; "
                                   f"last lines of {log}:\n{log_tail(log)}")


def explain(root: Sysroot, side: Side, modules: list[str], state: dict[str, str],
            shipped: Path = SHIPPED_DIR) -> list[dict[str, str]]:
    """Every script of every phase: where it comes from, whether its module is enabled, whether it will run."""
    rows = []
    for phase in PHASES:
        for s in discover(root, side, phase, shipped):
            rows.append({"phase": phase, "script": s.name, "module": s.module, "origin": str(s.origin),
                         "where": "list" if phase == "packages" else "chroot" if s.in_chroot else "frontend",
                         "status": script_status(s, state) if s.module in modules else "module off",
                         "path": str(s.path)})
    return rows


def script_status(script: Script, state: dict[str, str]) -> str:
    """An enabled script: 'every time' (configure), 'never ran', 'done' or 'changed' (run-once phases)."""
    if script.phase not in RUN_ONCE:
        return "every time"
    if script.key not in state:
        return "never ran"
    return "done" if state[script.key] == script.digest() else "changed"


def pending(target: Target, state: dict[str, str], force: bool = False) -> list[str]:
    """What run_phases(TARGET) would run given the run-once STATE, a line each (--dry-run): every script
    want_run picks, with why, and the packages phase's transaction."""
    prefix = "image" if target.image else "frontend"
    lines = []
    for phase in PHASES:
        scripts = effective(target.root, target.side, phase, target.modules, target.shipped)
        if phase == "packages":
            packages = packages_to_install(target, scripts, state, force)
            if packages and not target.image and not target.root.is_host:
                lines.append(f"Would skip frontend_packages: {target.root.root} is not the host")
            elif packages:
                lines.append(f"Would execute {prefix}_packages: {len(packages)} packages in one apt transaction "
                             f"({' '.join(packages)})")
            continue
        for s in scripts:
            if want_run(s, state, force):
                status = script_status(s, state)
                why = "--force" if status == "done" else status
                lines.append(f"Would execute {prefix}_{s.name} ({phase}: {why})")
    return lines
