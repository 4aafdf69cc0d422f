"""The image programs' dry runs, as the real programs on a scratch --root: exit 0, the lines of what they would do
(the very steps the real run then reports), and the tree byte- and mtime-identical."""

from __future__ import annotations

import json

import pytest

from kestrel.config import load_config
from kestrel.images import bootstrap, build, definitions, phases, scripts, store
from kestrel.sysroot import Sysroot
from tests.treestate import dry_run, kestrel


def publish_version(root: Sysroot, name: str, version: str, state: dict[str, str], definition: str = "") -> None:
    """A version as kestrel-images leaves it (a root holding its run-once state, boot files), published."""
    image_root = f"{store.versions_dir(name)}/{version}"
    scripts.save_state(root.path(image_root) / scripts.IMAGE_STATE.lstrip("/"), state)
    for boot_root in store.BOOT_DIRS:
        folder = root.path(store.boot_dir(boot_root, name, version))
        folder.mkdir(parents=True)
        (folder / "vmlinuz").write_bytes(b"kernel")
        (folder / "initrd.img").write_bytes(b"initrd")
    store.publish(
        root,
        {
            "name": name,
            "version": version,
            "root": image_root,
            "cmdline": "",
            "kernel": f"images/{name}/{version}/vmlinuz",
            "initrd": f"images/{name}/{version}/initrd.img",
            "built": f"2026-11-22T00:00:0{version[-1]}",
            "definition": definition,
        },
    )


def modules(tree: Sysroot) -> list[str]:
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    return definitions.image_modules(definitions.load_definition(tree, "default"), config.modules)


def effective_scripts(tree: Sysroot, phase: str) -> list[scripts.Script]:
    return scripts.effective(tree, scripts.Side.NODE, phase, modules(tree))


@pytest.fixture
def image(tree: Sysroot) -> Sysroot:
    """Image default, versions v1 and v2 (current), whose run-once state is: every install script done but
    nfsroot_initramfs (changed since), every package list done, post-install never ran; the frontend is planned."""
    state = {s.key: s.digest() for phase in ("install", "packages") for s in effective_scripts(tree, phase)}
    state["install/nfsroot_initramfs"] = "an older version of the script"
    state["packages/definition"] = phases._definition_digest(
        phases.Target(tree, load_config(tree.path("/etc/kestrel/kestrel.yaml")), [], image="default")
    )
    publish_version(tree, "default", "v1", state)
    publish_version(tree, "default", "v2", state)
    proc = kestrel("reconfigure", tree.root, "--frontend")
    assert proc.returncode == 0, proc.stderr
    return tree


def test_reconfigure_image_dry_run_lists_the_scripts_it_would_run(image: Sysroot) -> None:
    lines = dry_run("reconfigure", image.root, "--image", "default", "--dry-run")
    r = image.root
    assert lines == [
        "Would make a new version of default from version v2 (copy-on-write)",
        "Would execute image_nfsroot_initramfs (install: changed)",
        *(f"Would execute image_{s.name} (post-install: never ran)" for s in effective_scripts(image, "post-install")),
        *(f"Would execute image_{s.name} (configure: every time)" for s in effective_scripts(image, "configure")),
        f"Would publish the new version: its manifest, the link {r}/srv/kestrel/images/default switched to it, "
        f"then {r}/var/lib/kestrel/images/default.json",
        # images.keep is 3: v1 and v2 stay beside the new version (nothing to remove)
        "Would point the frontend's boot files and NFS exports at the new version of default",
    ]
    assert len([line for line in lines if "(configure: every time)" in line]) >= 5
    forced = dry_run("reconfigure", image.root, "--image", "default", "--dry-run", "--force")
    assert f"Would execute image_{effective_scripts(image, 'install')[0].name} (install: --force)" in forced
    assert any(line.startswith("Would execute image_packages: ") for line in forced)


def test_reconfigure_dry_run_without_images_is_the_frontend_plan(image: Sysroot) -> None:
    assert dry_run("reconfigure", image.root, "--all", "--dry-run")[-1].startswith("Would point the frontend")
    image.path("/etc/kestrel/kestrel.yaml").write_text(
        image.path("/etc/kestrel/kestrel.yaml").read_text().replace("lease_time: 12h", "lease_time: 1h")
    )
    assert dry_run("reconfigure", image.root, "--frontend", "--dry-run") == [
        f"Would write {image.root}/etc/dnsmasq.d/kestrel.conf",
        f"Would skip restart of dnsmasq: not running under {image.root}",
    ]


def test_remove_dry_run_then_the_same_steps_for_real(image: Sysroot) -> None:
    r = image.root
    lines = dry_run("images", r, "remove", "default", "--dry-run")
    assert lines == [
        f"Would remove {r}/var/lib/kestrel/images/default.json",
        f"Would remove {r}/srv/kestrel/images/default",
        f"Would remove {r}/srv/kestrel/images/default.versions",
        f"Would remove {r}/var/lib/kestrel/images/default.versions",
        f"Would remove {r}/srv/kestrel/http/images/default",
        f"Would remove {r}/srv/kestrel/tftp/images/default",
        "Would replan the frontend: its boot files and NFS exports of default go",
    ]
    diff = dry_run("images", r, "remove", "default", "--dry-run", "--diff")
    assert ' "version": "v2"' not in diff and '- "version": "v2"' in diff and "+++ /dev/null" in diff
    done = kestrel("images", r, "remove", "default")
    assert done.returncode == 0, done.stderr
    assert [line.replace("Would remove", "Removed") for line in lines[:-1]] == done.stderr.splitlines()[:6]
    assert f"Removed {r}/srv/kestrel/http/boot/default.ipxe" in done.stderr  # the frontend followed
    assert not image.path("/srv/kestrel/images/default.versions").exists()
    gone = kestrel("images", r, "remove", "default", "--dry-run")
    assert (gone.returncode, gone.stderr) == (2, "kestrel-images: image 'default' does not exist\n")


def test_rollback_dry_run_with_the_manifests_diff_then_for_real(image: Sysroot) -> None:
    r = image.root
    lines = dry_run("images", r, "rollback", "default", "--dry-run", "--diff")
    assert lines[:2] == [
        f"Would link {r}/srv/kestrel/images/default -> default.versions/v1",
        f"Would write {r}/var/lib/kestrel/images/default.json",
    ]
    assert '- "version": "v2"' in lines and '+ "version": "v1"' in lines
    assert lines[-1] == "Would point the frontend's boot files and NFS exports at version v1 of default"
    done = kestrel("images", r, "rollback", "default")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[:3] == [
        f"Linked {r}/srv/kestrel/images/default -> default.versions/v1",
        f"Wrote {r}/var/lib/kestrel/images/default.json",
        "Rolled default back to version v1",
    ]
    assert json.loads(image.path(store.manifest_path("default")).read_text())["version"] == "v1"


def test_build_dry_run_says_update_or_bootstrap_then_the_scripts(image: Sysroot) -> None:
    r = image.root
    definition = definitions.load_definition(image, "default")
    key = bootstrap.base_key(definition)
    lines = dry_run("images", r, "build", "default", "--dry-run")
    assert lines[0] == (
        f"Would bootstrap a new base {key} with mmdebstrap bookworm (minbase) from "
        f"http://deb.debian.org/debian into {r}/var/cache/kestrel/bases/{key}, then copy it to "
        "a new version"
    )
    assert f"Would execute image_{effective_scripts(image, 'install')[0].name} (install: never ran)" in lines
    assert lines[-1] == "Would point the frontend's boot files and NFS exports at the new version of default"
    cached = image.root / "cache"
    (cached / "bases" / key).mkdir(parents=True)
    lines = dry_run("images", r, "build", "default", "--dry-run", env={"KESTREL_CACHE_DIR": str(cached)})
    assert lines[0] == f"Would copy the cached base {key} (mmdebstrap bookworm (minbase)) to a new version"
    # the current version's definition is unchanged: an update, copy-on-write, with its run-once state
    digest = build.definition_digest(definition, modules(image))
    manifest = image.path(store.manifest_path("default"))
    manifest.write_text(manifest.read_text().replace('"definition": ""', f'"definition": "{digest}"'))
    lines = dry_run("images", r, "build", "default", "--dry-run")
    assert lines[:2] == [
        "Would update default from version v2 (its definition is unchanged; --force rebuilds): "
        "a new version, copy-on-write",
        "Would execute image_nfsroot_initramfs (install: changed)",
    ]


def test_apt_dry_run_lists_the_apt_steps(image: Sysroot) -> None:
    for args in (["default", "install", "htop", "--dry-run"], ["--dry-run", "default", "install", "htop"]):
        lines = dry_run("apt", image.root, *args)
        assert lines[:5] == [
            "Would make a new version of default from version v2 (copy-on-write)",
            "Would execute image_apt-get update",
            "Would execute image_apt-get install htop",
            f"Would record in {image.path('/etc/kestrel/images/default.apt')}: install htop",
            "Would execute image_nfsroot_initramfs (install: changed)",
        ]
    lines = dry_run("apt", image.root, "--image", "default", "--install", "htop", "--uninstall", "nano", "--dry-run")
    assert lines[2:5] == [
        "Would execute image_apt-get install --no-install-recommends htop",
        "Would execute image_apt-get remove --purge nano",
        f"Would record in {image.path('/etc/kestrel/images/default.apt')}: install htop, remove nano",
    ]
    assert not image.path("/etc/kestrel/images/default.apt").exists()
