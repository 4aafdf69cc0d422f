"""Running phase scripts on an image or the frontend: their environment, logs, chroot scripts, the packages phase
as one apt transaction, run-once bookkeeping, and what a dry run would run."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kestrel import runner
from kestrel.config import Config
from kestrel.images import apt, chroot, scripts
from kestrel.images.progress import Progress
from kestrel.sysroot import LOG_DIR, Sysroot

logger = logging.getLogger(__name__)


def script_env(config: Config, root: Sysroot, phase: str, image: str | None, image_root: str | None) -> dict[str, str]:
    """The documented KESTREL_* environment (plus a plain PATH and locale)."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C",
        "DEBIAN_FRONTEND": "noninteractive",
        "HOME": "/root",
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
    removed_packages: list[str] = field(default_factory=list)  # kestrel-apt's recorded removals: out after install
    shipped: Path = scripts.SHIPPED_DIR
    log_dir: Path | None = None  # an image version's logs (store.log_dir); None: LOG_DIR/frontend

    @property
    def side(self) -> scripts.Side:
        return scripts.Side.NODE if self.image else scripts.Side.FRONTEND

    @property
    def state_path(self) -> Path:
        if self.image_root is not None:
            return self.image_root / scripts.IMAGE_STATE.lstrip("/")
        return self.root.path(scripts.FRONTEND_STATE)

    def log_path(self, phase: str) -> Path:
        if self.log_dir is not None:
            return self.log_dir / f"{phase}.log"
        sub = f"images/{self.image}" if self.image else "frontend"
        return self.root.path(f"{LOG_DIR}/{sub}/{phase}.log")


def run_phases(
    target: Target, phases: tuple[str, ...] = scripts.PHASES, force: bool = False, progress: Progress | None = None
) -> None:
    """Run PHASES in order; run-once phases skip scripts already run with the same content. PROGRESS counts the
    phases it holds (planned_phases) as steps."""
    state = scripts.load_state(target.state_path)
    progress = progress or Progress()
    with apt.image_guard(target.image_root):
        for phase in phases:
            found = scripts.effective(target.root, target.side, phase, target.modules, target.shipped)
            if not found and not (phase == "packages" and (target.extra_packages or target.removed_packages)):
                continue
            log = target.log_path(phase)
            log.parent.mkdir(parents=True, exist_ok=True)
            with progress.step(phase, log), open(log, "wb") as out:
                if phase == "packages":
                    _run_packages(target, found, state, force, out)
                else:
                    for script in found:
                        if scripts.want_run(script, state, force):
                            _run_script(target, script, out, log)
                            if phase in scripts.RUN_ONCE:
                                state[script.key] = script.digest()
                                scripts.save_state(target.state_path, state)


def _run_script(target: Target, script: scripts.Script, out: IO[bytes], log: Path) -> None:
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
        proc = runner.run(argv, env=env, check=False, output=out, timeout=apt.SCRIPT_TIMEOUT)
    if not proc.ok:
        out.flush()
        raise apt.ScriptFailed(
            f"{script.name} ({script.path}) failed: {proc.why()}; last lines of {log}:\n{apt.log_tail(log, start)}"
        )


def _chroot_script(image_root: Path, script: scripts.Script, env: dict[str, str], out: IO[bytes]) -> runner.Result:
    """Copy the script into the image's /tmp, run it there, remove it."""
    inside = f"/tmp/.kestrel-{script.name}"
    real = image_root / inside.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(script.path, real)
    real.chmod(0o755)
    try:
        return runner.run(
            [inside], via=chroot.Chroot(image_root), env=env, output=out, timeout=apt.SCRIPT_TIMEOUT, check=False
        )
    finally:
        real.unlink(missing_ok=True)


def _run_packages(
    target: Target, lists: list[scripts.Script], state: dict[str, str], force: bool, out: IO[bytes]
) -> None:
    """Every enabled list (plus the definition's packages) in one apt transaction, when one changed; then the
    removal of the recorded removed packages that are installed."""
    if not packages_changed(target, lists, state, force):
        return
    packages = wanted_packages(target, lists)
    prefix = "image" if target.image else "frontend"
    logger.info(f"Executing : {prefix}_packages ({len(packages)} packages in one apt transaction)")
    log = target.log_path("packages")
    start = out.tell()
    env = script_env(target.config, target.root, "packages", target.image, "/")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *apt.APT_OPTIONS, *packages]
    update = ["apt-get", "update", *apt.APT_OPTIONS[-2:]]
    # Nothing to install or remove (every list empty): no apt at all, the image may not even have it.
    steps = [update, install] if packages else [update] if target.removed_packages else []
    if target.removed_packages:
        steps.append(["sh", "-c", apt.REMOVE_INSTALLED, "sh", *target.removed_packages])
    if (
        update in steps
        and target.image_root is not None
        and target.apt_cache is not None
        and chroot.lists_fresh(target.apt_cache, target.image_root)
    ):
        steps.remove(update)
        out.write(b"==> apt-get update skipped: the shared indexes were fetched for these sources moments ago\n")
    if target.image_root is not None and steps:
        # A new kernel's postinst makes its initrd at once and the initramfs-tools trigger (busybox, klibc,
        # zstd in the same transaction) makes it again: INITRD=No skips the first, one run makes it after.
        env["INITRD"] = "No"
        steps.append(["sh", "-c", apt.MISSING_INITRDS])
    for argv in steps:
        out.write(f"==> {' '.join(argv)}\n".encode())
        out.flush()
        if target.image_root is not None:
            proc = runner.run(
                argv,
                via=chroot.Chroot(target.image_root, target.apt_cache),
                env=env,
                output=out,
                timeout=apt.SCRIPT_TIMEOUT,
                check=False,
            )
        elif target.root.is_host:
            proc = runner.run(argv, env=env, check=False, output=out, timeout=apt.SCRIPT_TIMEOUT)
        else:
            logger.info(f"Skipped frontend packages: {target.root.root} is not the host")
            return
        if proc.ok and argv is update and target.image_root is not None and target.apt_cache:
            chroot.mark_lists_fresh(target.apt_cache, target.image_root)
        if not proc.ok:
            what = (
                argv[1]
                if argv[0] == "apt-get"
                else "remove"
                if argv[2] == apt.REMOVE_INSTALLED
                else "update-initramfs after"
            )
            raise apt.ScriptFailed(
                f"packages ({what} of {' '.join(packages)}) failed: "
                f"{proc.why()}; last lines of {log}:\n{apt.log_tail(log, start)}"
            )
    for s in lists:
        state[s.key] = s.digest()
    state[_DEFINITION_KEY] = _definition_digest(target)
    scripts.save_state(target.state_path, state)
    if target.image_root is not None:
        apt.drop_apt_indexes(target.image_root)


_DEFINITION_KEY = "packages/definition"  # the run-once state of the image definition's own packages


def _definition_digest(target: Target) -> str:
    return definition_packages_digest(target.extra_packages, target.removed_packages)


def definition_packages_digest(extra: list[str], removed: list[str]) -> str:
    """The run-once state of the definition's packages and kestrel-apt's recorded ones."""
    text = " ".join(sorted(extra)) + (f" | remove {' '.join(sorted(removed))}" if removed else "")
    return hashlib.sha256(text.encode()).hexdigest()


def mark_packages_done(state_path: Path, before: Target, after: Target) -> None:
    """kestrel-apt did AFTER's packages by hand in the image of STATE_PATH: when the packages phase was done for
    BEFORE's, it is now done for AFTER's (a later build does not run it again for nothing)."""
    state = scripts.load_state(state_path)
    if state.get(_DEFINITION_KEY) == _definition_digest(before):
        state[_DEFINITION_KEY] = _definition_digest(after)
        scripts.save_state(state_path, state)


def packages_changed(target: Target, lists: list[scripts.Script], state: dict[str, str], force: bool) -> bool:
    """Whether the packages phase has work: a list or the definition's packages changed since (or FORCE)."""
    return (
        force
        or any(scripts.want_run(s, state, False) for s in lists)
        or state.get(_DEFINITION_KEY) != _definition_digest(target)
    )


def wanted_packages(target: Target, lists: list[scripts.Script]) -> list[str]:
    """Every enabled list and the definition's packages, but the removed ones."""
    wanted = {p for s in lists for p in scripts.read_package_list(s)} | set(target.extra_packages)
    return sorted(wanted - set(target.removed_packages))


def packages_to_install(target: Target, lists: list[scripts.Script], state: dict[str, str], force: bool) -> list[str]:
    """The packages phase's one transaction when it has work (packages_changed), else empty."""
    return wanted_packages(target, lists) if packages_changed(target, lists, state, force) else []


def _packages_label(target: Target, lists: list[scripts.Script], state: dict[str, str], force: bool) -> str | None:
    """What the packages phase would do, or None: `apt (10 packages)`, `apt (10 packages, removes nano)`."""
    if not packages_changed(target, lists, state, force):
        return None
    packages = wanted_packages(target, lists)
    removes = f", removes {' '.join(target.removed_packages)}" if target.removed_packages else ""
    if not packages and not removes:
        return None
    return f"apt ({len(packages)} package{'' if len(packages) == 1 else 's'}{removes})"


def planned_phases(target: Target, state: dict[str, str], force: bool = False) -> list[tuple[str, str]]:
    """The phases run_phases(TARGET) would do work in given the run-once STATE, with what (a build's steps):
    `packages`, `apt (10 packages)`; `configure`, `6 scripts`."""
    steps = []
    for phase in scripts.PHASES:
        found = scripts.effective(target.root, target.side, phase, target.modules, target.shipped)
        if phase == "packages":
            label = _packages_label(target, found, state, force)
            if label:
                steps.append((phase, label))
            continue
        count = sum(1 for s in found if scripts.want_run(s, state, force))
        if count:
            steps.append((phase, f"{count} script{'s' if count > 1 else ''}"))
    return steps


def pending(target: Target, state: dict[str, str], force: bool = False) -> list[str]:
    """What run_phases(TARGET) would run given the run-once STATE, a line each (--dry-run): every script
    want_run picks, with why, and the packages phase's transaction."""
    prefix = "image" if target.image else "frontend"
    lines = []
    for phase in scripts.PHASES:
        found = scripts.effective(target.root, target.side, phase, target.modules, target.shipped)
        if phase == "packages":
            label = _packages_label(target, found, state, force)
            packages = wanted_packages(target, found)
            if label and not target.image and not target.root.is_host:
                lines.append(f"Would skip frontend_packages: {target.root.root} is not the host")
            elif label:
                removes = f", then remove {' '.join(target.removed_packages)}" if target.removed_packages else ""
                lines.append(
                    f"Would execute {prefix}_packages: {len(packages)} packages in one apt transaction "
                    f"({' '.join(packages)}){removes}"
                )
            continue
        for s in found:
            if scripts.want_run(s, state, force):
                status = scripts.script_status(s, state)
                why = "--force" if status == "done" else status
                lines.append(f"Would execute {prefix}_{s.name} ({phase}: {why})")
    return lines
