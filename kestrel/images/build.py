"""The image build pipeline: staging tree -> base -> phases -> boot files -> atomic publish.

The caller then replans the frontend (its NFS exports and boot files follow the published versions). The build
fills a new version's tree outside any plan (nothing serves it before publishing); describe_build and
describe_update say what a build would do (--dry-run)."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kestrel import runner
from kestrel.config import Config, ImageDefinition
from kestrel.errors import InputError, KestrelError
from kestrel.images import apt, bootfiles, bootstrap, chroot, cow, phases, recorded, scripts, store
from kestrel.images.definitions import image_modules, load_definition
from kestrel.images.progress import Progress
from kestrel.plan import apply_changes, plan_lines
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)


def definition_digest(definition: ImageDefinition, modules: list[str]) -> str:
    text = definition.model_dump_json() + repr(modules)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """What every step of one image's build needs: the tree, the config, the image's definition and modules."""

    root: Sysroot
    config: Config
    name: str
    definition: ImageDefinition
    modules: list[str]
    recorded: recorded.Recorded = recorded.Recorded()

    @property
    def digest(self) -> str:
        return definition_digest(self.definition, self.modules)

    def target(self, **where: Any) -> phases.Target:
        """Where the phases act for this image (WHERE: image_root, apt_cache, log_dir)."""
        return phases.Target(
            self.root,
            self.config,
            self.modules,
            image=self.name,
            extra_packages=sorted({*self.definition.packages, *self.recorded.install}),
            removed_packages=list(self.recorded.remove),
            **where,
        )


def _job(root: Sysroot, config: Config, name: str) -> Job:
    definition = load_definition(root, name)
    return Job(
        root, config, name, definition, image_modules(definition, config.modules), recorded.load_recorded(root, name)
    )


def build_image(
    root: Sysroot, config: Config, name: str, *, force: bool = False, use_cache: bool = True
) -> dict[str, Any]:
    """Build NAME: from the current version when its definition is unchanged (only changed scripts and
    configure run), else (or with FORCE) from the cached base, and publish it (the caller replans the frontend)."""
    job = _job(root, config, name)
    now = store.current(root, name)
    if _updatable(root, now, job.digest, force):
        assert now is not None
        logger.info(f"Updating {name} from version {now['version']} (its definition is unchanged; --force rebuilds)")
        return _new_version(job, job.digest, lower=root.path(now["root"]), base=now.get("base"))

    def fill(staging: Path, logs: Path) -> str | None:
        return bootstrap.bootstrap(root, job.definition, staging, use_cache=use_cache, log=logs / "base.log")

    return _new_version(job, job.digest, fill=fill, first=("base", bootstrap.label(job.definition)))


def _updatable(root: Sysroot, now: dict[str, Any] | None, digest: str, force: bool) -> bool:
    """Whether a build updates the current version NOW (its definition unchanged) rather than start from a base."""
    return bool(now and not force and now.get("definition") == digest and root.path(now["root"]).is_dir())


def describe_build(
    root: Sysroot, config: Config, name: str, *, force: bool = False, use_cache: bool = True
) -> list[str]:
    """What build_image would do (--dry-run), a line each: update the current version or start from which base,
    the phase scripts it would run, what publishing replaces and removes. Reads only."""
    job = _job(root, config, name)
    now = store.current(root, name)
    if _updatable(root, now, job.digest, force):
        assert now is not None
        return [
            f"Would update {name} from version {now['version']} (its definition is unchanged; --force "
            "rebuilds): a new version, copy-on-write",
            *_describe_version(job, _state_of(root, now), force=False),
        ]
    return [bootstrap.describe(root, job.definition, use_cache=use_cache), *_describe_version(job, {}, force=force)]


def describe_update(
    root: Sysroot, config: Config, name: str, *, force: bool = False, apt_steps: list[list[str]] | None = None
) -> list[str]:
    """What update_image would do (--dry-run): the apt steps, then the phase scripts, then publishing."""
    now = _published(root, name)
    apt = [f"Would execute image_apt-get {' '.join(args)}" for args in [["update"], *apt_steps]] if apt_steps else []
    before = recorded.load_recorded(root, name)
    after = before.applied(apt_steps or [])
    if after != before:
        apt.append(f"Would record in {root.path(recorded.recorded_path(name))}: {recorded.describe(before, after)}")
    return [
        f"Would make a new version of {name} from version {now['version']} (copy-on-write)",
        *apt,
        *_describe_version(_job(root, config, name), _state_of(root, now), force=force),
    ]


def _describe_version(job: Job, state: dict[str, str], *, force: bool) -> list[str]:
    root, name = job.root, job.name
    target = job.target()
    lines = phases.pending(target, state, force)
    now = store.current(root, name)
    keep = job.config.images.keep
    prune, pinned = store.plan_prune(root, name, {now["version"]} if now and keep >= 2 else set(), keep - 1)
    return [
        *lines,
        f"Would publish the new version: its manifest, the link {root.sys(f'{store.IMAGES_DIR}/{name}')} "
        f"switched to it, then {root.sys(store.manifest_path(name))}",
        *plan_lines(root, prune, diff=False),
        *(f"Would keep {name} version {v}: up nodes run on it" for v in pinned),
    ]


def _state_of(root: Sysroot, manifest: dict[str, Any]) -> dict[str, str]:
    """The run-once state of a published version (its copy-on-write successor starts from it)."""
    return scripts.load_state(root.path(manifest["root"]) / scripts.IMAGE_STATE.lstrip("/"))


def _published(root: Sysroot, name: str) -> dict[str, Any]:
    now = store.current(root, name)
    if now is None:
        raise InputError(f"image '{name}' is not built yet: run kestrel-images build {name}")
    return now


def update_image(
    root: Sysroot,
    config: Config,
    name: str,
    *,
    force: bool = False,
    apt_steps: list[list[str]] | None = None,
    edit: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """A new version of NAME from its current one: `apt-get STEP` for each of APT_STEPS (or EDIT of the tree)
    first, then the run-once phases whose scripts changed or never ran (all of them with FORCE), then configure."""
    now = _published(root, name)
    before = _job(root, config, name)
    # what apt_steps install and remove is recorded beside the definition: a rebuild keeps it
    job = dataclasses.replace(before, recorded=before.recorded.applied(apt_steps)) if apt_steps else before

    def prepare(tree: Path, logs: Path) -> None:
        if apt_steps:
            _apt(root, tree, apt_steps, logs / "apt.log")
            phases.mark_packages_done(tree / scripts.IMAGE_STATE.lstrip("/"), before.target(), job.target())
        if edit:
            edit(tree)

    manifest = _new_version(
        job,
        now.get("definition", ""),
        lower=root.path(now["root"]),
        base=now.get("base"),
        prepare=prepare,
        first=("apt", "; ".join(f"apt-get {' '.join(a)}" for a in apt_steps)) if apt_steps else _edit_step(edit),
        force=force,
        unchanged=now,
    )
    if job.recorded != before.recorded:
        path = root.path(recorded.recorded_path(name))
        logger.info(f"Recorded in {path}: {recorded.describe(before.recorded, job.recorded)} (a rebuild keeps it)")
        with root.lock():
            apply_changes(root, recorded.plan_record(root, name, job.recorded))
    return manifest


def _edit_step(edit: Callable[[Path], None] | None) -> tuple[str, str] | None:
    return ("shell", "until it exits") if edit else None


def shell_image(root: Sysroot, config: Config, name: str) -> dict[str, Any]:
    """An interactive shell in a new version of NAME; published (after configure) when the shell exits 0."""

    def edit(tree: Path) -> None:
        logger.info(f"Shell in a new version of {name}: exit to publish it, 'exit 1' to discard your changes")
        proc = runner.run(
            ["/bin/sh", "-l"],
            via=chroot.Chroot(tree),
            interactive=True,
            check=False,
            env={"TERM": os.environ.get("TERM", "xterm"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"},
        )
        if not proc.ok:
            raise KestrelError(f"shell exited with {proc.why()}: changes discarded, {name} unchanged")

    return update_image(root, config, name, edit=edit)


def _apt(root: Sysroot, staging: Path, steps: list[list[str]], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        apt.apt_get(staging, [["update"], *steps], out=out, log=log, apt_cache=bootstrap.apt_cache(root))
    apt.drop_apt_indexes(staging)


def _new_version(
    job: Job,
    digest: str,
    *,
    fill: Callable[[Path, Path], str | None] | None = None,
    lower: Path | None = None,
    base: str | None = None,
    prepare: Callable[[Path, Path], None] | None = None,
    first: tuple[str, str] | None = None,
    force: bool = False,
    unchanged: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new version: from FILL (a fresh base) or, copy-on-write, from LOWER (the current version). When the
    phases changed nothing in LOWER's tree, UNCHANGED (LOWER's manifest) is returned and nothing is published:
    a run with nothing to do must not push the version to roll back to out of the kept ones. Each step prints a
    counter, FIRST (FILL's or PREPARE's step: key, label) then the phases with work, then publishing."""
    root, name, definition, modules = job.root, job.name, job.definition, job.modules
    started = time.monotonic()
    folder = root.path(store.versions_dir(name))
    with _build_lock(root, name):
        _remove_leftovers(folder, root.path(store.log_dir(name)))
        version = _new_version_id(root, name)
        staging = folder / f".staging-{version}"
        scratch = folder / f".cow-{version}"
        logs = root.path(store.log_dir(name, version))
        logs.mkdir(parents=True, exist_ok=True)
        target = job.target(image_root=staging, apt_cache=bootstrap.apt_cache(root), log_dir=logs)
        state = {} if lower is None else scripts.load_state(lower / scripts.IMAGE_STATE.lstrip("/"))
        progress = Progress([*([first] if first else []), *phases.planned_phases(target, state, force)])
        progress.add("publish", "boot files, manifest")
        first_log = logs / f"{first[0]}.log" if first else None
        try:
            if lower is None:
                assert fill is not None and first is not None
                with progress.step(first[0], first_log):
                    base = fill(staging, logs)
                phases.run_phases(target, force=force, progress=progress)
            else:
                with cow.overlay(lower, scratch) as merged:
                    if prepare and first:
                        with progress.step(first[0], first_log):
                            prepare(merged, logs)
                    phases.run_phases(dataclasses.replace(target, image_root=merged), force=force, progress=progress)
                changed = cow.changes(lower, scratch / "upper") if unchanged is not None else None
                if unchanged is not None and not changed:
                    logger.info(f"{name} unchanged: version {unchanged['version']} stays current, nothing published")
                    return unchanged
                if changed:
                    logger.debug(f"{name}: {len(changed)} paths changed: {', '.join(changed[:20])}")
                cow.materialize(lower, scratch / "upper", staging)
            chroot.assert_unmounted(staging)
            with progress.step("publish"):
                kernel, initrd, kernel_version = bootfiles.copy_boot_files(root, name, version, staging)
                staging.rename(folder / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for boot_root in store.BOOT_DIRS:
                shutil.rmtree(root.path(store.boot_dir(boot_root, name, version)), ignore_errors=True)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        manifest = {
            "name": name,
            "version": version,
            "root": f"{store.versions_dir(name)}/{version}",
            "kernel": kernel,
            "initrd": initrd,
            "kernel_version": kernel_version,
            "cmdline": definition.cmdline,
            "built": datetime.now(UTC).isoformat(timespec="microseconds"),
            "modules": modules,
            "size": store.tree_size(folder / version),
            "definition": digest,
            "base": base,
            "logs": store.log_dir(name, version),
        }
        store.publish(root, manifest, job.config.images.keep)
    logger.info(f"Published {name} version {version} in {time.monotonic() - started:.1f} s")
    return manifest


def _remove_leftovers(folder: Path, logs: Path) -> None:
    """What a killed build left: staging trees and overlay scratch (unmounted first); and the logs of versions that
    were never published (a failed build's, read by now: its error named them) or are gone."""
    if folder.is_dir():
        for stale in [*folder.glob(".staging-*"), *folder.glob(".cow-*"), *folder.glob(".trash-*")]:
            cow.unmount(stale / "merged")
            shutil.rmtree(stale, ignore_errors=True)
    if logs.is_dir():
        for version_logs in logs.iterdir():
            if version_logs.is_dir() and not (folder / version_logs.name).is_dir():
                shutil.rmtree(version_logs, ignore_errors=True)


def _new_version_id(root: Sysroot, name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    version, n = stamp, 1
    while root.path(f"{store.versions_dir(name)}/{version}").exists():
        n += 1
        version = f"{stamp}-{n}"
    return version


@contextmanager
def _build_lock(root: Sysroot, name: str) -> Iterator[None]:
    """One build of an image at a time (not the global lock: DHCP's lease hook must not wait for a build)."""
    path = root.path(f"{store.MANIFESTS_DIR}/{name}.lock")
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
