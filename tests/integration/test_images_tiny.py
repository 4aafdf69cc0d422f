"""A tiny image imported from a busybox tarball: admin scripts, _chroot scripts with /proc /sys /dev,
run-once, a failing script (the served version stays intact), rollback, remove. Real chroot, unshare,
tar and the kestrel-images program; no package mirror needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kestrel import runner, vocabulary
from kestrel.errors import CommandError
from kestrel.images import chroot
from kestrel.sysroot import Sysroot
from tests.conftest import need_root
from tests.treestate import tree_state

PROGRAM = str(Path(sys.executable).with_name("kestrel-images"))


def busybox_tarball(path: Path, work: Path) -> None:
    """A root file system of one static busybox and its applet links."""
    tree = work / "busybox-root"
    (tree / "bin").mkdir(parents=True)
    for folder in ("etc", "tmp", "var", "proc", "sys", "dev", "root"):
        (tree / folder).mkdir()
    shutil.copy2("/bin/busybox", tree / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    with tarfile.open(path, "w") as tar:
        tar.add(tree, arcname=".")


class AnyTime(str):
    """A step's last line: HEAD, a whole number of seconds, TAIL."""

    pattern: re.Pattern[str]

    def __new__(cls, head: str, tail: str) -> AnyTime:
        made = super().__new__(cls, f"{head}N s{tail}")
        made.pattern = re.compile(re.escape(head) + r"\d+ s" + re.escape(tail))
        return made

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self.pattern.fullmatch(other))

    __hash__ = str.__hash__


def admin_script(root: Sysroot, phase: str, name: str, body: str) -> Path:
    path = root.path(f"/etc/kestrel/node/{phase}.d/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nset -e\n{body}\n")
    path.chmod(0o755)
    return path


def images(root: Sysroot, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KESTREL_CACHE_DIR=str(root.path("/var/cache/kestrel")))
    argv = [PROGRAM, "--root", str(root.root), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=300)


def manifest(root: Sysroot) -> dict:
    return json.loads(root.path("/var/lib/kestrel/images/tiny.json").read_text())


@pytest.fixture
def tiny(tree: Sysroot) -> Sysroot:
    need_root()
    tree.path("/var/tmp").mkdir(parents=True)
    busybox_tarball(tree.path("/var/tmp/tiny.tar"), tree.root)
    definition = tree.path("/etc/kestrel/images/tiny.yaml")
    definition.write_text("bootstrap: {method: tarball, tarball: /var/tmp/tiny.tar}\nmodules: [demo]\n")
    admin_script(tree, "install", "demo_count_chroot", "echo run >> /var/install-runs")
    admin_script(
        tree,
        "configure",
        "demo_mounts_chroot",
        'test "$KESTREL_IMAGE_ROOT" = /\n'
        "grep -q ' /proc ' /proc/self/mountinfo && test -d /sys/kernel && test -c /dev/null\n"
        'echo "$KESTREL_IMAGE $KESTREL_PHASE $KESTREL_FRONTEND_IP" > /etc/chroot-saw',
    )
    admin_script(
        tree, "configure", "demo_frontend", 'echo "$KESTREL_DOMAIN" > "$KESTREL_IMAGE_ROOT/etc/frontend-wrote"'
    )
    admin_script(tree, "configure", "other_skipped", 'touch "$KESTREL_IMAGE_ROOT/etc/must-not-exist"')
    return tree


def test_tiny_image_build_fail_rollback_remove(tiny: Sysroot) -> None:
    root = tiny
    first = images(root, "build", "tiny")
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    assert "Executing : image_demo_count_chroot" in lines
    assert "Executing : image_demo_mounts_chroot" in lines
    assert not any("other_skipped" in line for line in lines)
    assert any(line.startswith("Warning: tiny has no kernel") for line in lines)
    v1 = manifest(root)
    # a step counter: a line as each step starts, and one with its time and log as it ends
    logs = root.path(f"/var/log/kestrel/images/tiny/{v1['version']}")
    assert [line for line in lines if line.startswith("[")] == [
        "[1/4] base: tarball /var/tmp/tiny.tar ...",
        AnyTime("[1/4] base: tarball /var/tmp/tiny.tar ... ", ""),
        "[2/4] install: 1 script ...",
        AnyTime("[2/4] install: 1 script ... ", f", log: {logs}/install.log"),
        "[3/4] configure: 2 scripts ...",
        AnyTime("[3/4] configure: 2 scripts ... ", f", log: {logs}/configure.log"),
        "[4/4] publish: boot files, manifest ...",
        AnyTime("[4/4] publish: boot files, manifest ... ", ""),
    ]
    assert v1["kernel"] is None and v1["initrd"] is None and v1["modules"] == ["demo"]
    tree1 = root.path(v1["root"])
    assert (tree1 / "etc/chroot-saw").read_text() == "tiny configure 10.10.0.1\n"
    assert (tree1 / "etc/frontend-wrote").read_text() == "cluster.local\n"
    assert not (tree1 / "etc/must-not-exist").exists()
    assert not list((tree1 / "tmp").glob(".kestrel-*"))
    assert chroot.mounts_under(root.root) == []
    assert os.readlink(root.path("/srv/kestrel/images/tiny")) == f"tiny.versions/{v1['version']}"

    # a failing configure script: exit 1 with its name, exit code and log tail; version 1 stays served
    admin_script(root, "configure", "demo_zz-fail", "echo about to fail\nexit 7")
    names = sorted(p.name for p in tree1.rglob("*"))
    failed = images(root, "build", "tiny")
    assert failed.returncode == 1
    assert "demo_zz-fail" in failed.stderr and "exit code 7" in failed.stderr
    assert "about to fail" in failed.stderr
    assert manifest(root) == v1
    assert sorted(p.name for p in tree1.rglob("*")) == names
    assert [p.name for p in root.path("/srv/kestrel/images/tiny.versions").iterdir()] == [v1["version"]]
    assert chroot.mounts_under(root.root) == []

    # fixed: version 2 comes from version 1, the install script does not run again
    root.path("/etc/kestrel/node/configure.d/demo_zz-fail").unlink()
    before = tree_state(root.root)
    planned = images(root, "build", "tiny", "--dry-run")
    assert planned.returncode == 0 and tree_state(root.root) == before, planned.stderr
    assert planned.stdout.splitlines()[0] == (
        f"Would update tiny from version {v1['version']} (its definition is "
        "unchanged; --force rebuilds): a new version, copy-on-write"
    )
    second = images(root, "build", "tiny")
    assert second.returncode == 0, second.stderr
    # the dry run named exactly the scripts the build ran
    assert [
        line.split(" (")[0].replace("Would execute ", "")
        for line in planned.stdout.splitlines()
        if line.startswith("Would execute")
    ] == [line.replace("Executing : ", "") for line in second.stderr.splitlines() if line.startswith("Executing")]
    v2 = manifest(root)
    assert v2["version"] != v1["version"]
    assert "Executing : image_demo_count_chroot" not in second.stderr
    assert (root.path(v2["root"]) / "var/install-runs").read_text() == "run\n"
    # a changed install script runs again
    admin_script(root, "install", "demo_count_chroot", "echo run >> /var/install-runs\n# v2")
    third = images(root, "build", "tiny")
    assert third.returncode == 0, third.stderr
    v3 = manifest(root)
    assert (root.path(v3["root"]) / "var/install-runs").read_text() == "run\nrun\n"
    # three versions are kept (images.keep): the current and two to roll back to
    assert sorted(p.name for p in root.path("/srv/kestrel/images/tiny.versions").iterdir()) == sorted(
        [v1["version"], v2["version"], v3["version"]]
    )

    listed = json.loads(images(root, "list", "--json").stdout)
    assert [(r["name"], r["version"], r["modules"]) for r in listed] == [("tiny", v3["version"], ["demo"])]
    assert listed[0]["size"] > 500_000
    # each version keeps its own phase logs; --all lists every kept version and the defined images not built
    logs = root.path("/var/log/kestrel/images/tiny")
    assert sorted(p.name for p in logs.iterdir()) == sorted([v1["version"], v2["version"], v3["version"]])
    assert "demo_count_chroot" in (logs / v1["version"] / "install.log").read_text()
    assert "demo_count_chroot" not in (logs / v2["version"] / "install.log").read_text()  # version 2 did not run it
    assert v3["logs"] == f"/var/log/kestrel/images/tiny/{v3['version']}"
    every = json.loads(images(root, "list", "--all", "--json").stdout)
    assert [(r["name"], r["version"], r["state"]) for r in every] == [
        ("tiny", v3["version"], "current"),
        ("tiny", v2["version"], "kept"),
        ("tiny", v1["version"], "kept"),
        ("debian-bookworm", None, "not built"),
        ("default", None, "not built"),
    ]
    assert list(vocabulary.problems(every)) == []
    table = images(root, "list", "--all").stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "STATE", "SIZE", "BUILT", "NODES", "ON", "LOGS"]
    assert table[4].split()[:3] == ["debian-bookworm", "-", "not"]

    before = tree_state(root.root)
    planned = images(root, "rollback", "tiny", "--dry-run")
    assert planned.returncode == 0 and tree_state(root.root) == before, planned.stderr
    assert planned.stdout.splitlines()[0] == (
        f"Would link {root.root}/srv/kestrel/images/tiny -> tiny.versions/{v2['version']}"
    )
    back = images(root, "rollback", "tiny")
    assert back.returncode == 0, back.stderr
    assert manifest(root)["version"] == v2["version"]
    assert os.readlink(root.path("/srv/kestrel/images/tiny")) == f"tiny.versions/{v2['version']}"
    again = images(root, "rollback", "tiny")  # three kept: version 1 is there to roll back to as well
    assert again.returncode == 0 and manifest(root)["version"] == v1["version"], again.stderr
    last = images(root, "rollback", "tiny")
    assert last.returncode == 1 and "no older version" in last.stderr

    # version 1 (current again) ran the install script before it changed
    explained = json.loads(images(root, "explain", "tiny", "--json").stdout)
    assert {(r["script"], r["origin"], r["status"]) for r in explained if r["module"] == "demo"} == {
        ("demo_count_chroot", "added", "changed"),
        ("demo_mounts_chroot", "added", "every time"),
        ("demo_frontend", "added", "every time"),
    }

    # kestrel-reconfigure --all: the frontend's phases, then each image's configure phase (a new version)
    frontend = root.path("/etc/kestrel/frontend/configure.d/core_mark")
    frontend.parent.mkdir(parents=True)
    frontend.write_text('#!/bin/sh\necho "$KESTREL_PHASE" >> "$KESTREL_ROOT/frontend-ran"\n')
    frontend.chmod(0o755)
    reconf = subprocess.run(
        [str(Path(PROGRAM).with_name("kestrel-reconfigure")), "--root", str(root.root), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reconf.returncode == 0, reconf.stderr
    assert "Executing : frontend_core_mark" in reconf.stderr
    assert "Executing : image_demo_mounts_chroot" in reconf.stderr
    assert "Executing : image_demo_count_chroot" in reconf.stderr  # changed since version 1: runs again
    assert root.path("/frontend-ran").read_text() == "configure\n"
    v4 = manifest(root)
    assert v4["version"] not in (v2["version"], v3["version"])
    assert (root.path(v4["root"]) / "var/install-runs").read_text() == "run\nrun\n"
    # run again with nothing changed: the configure scripts write the same bytes, so no version is published (two
    # such runs once pushed the version to roll back to out of the kept ones)
    kept = sorted(p.name for p in root.path("/srv/kestrel/images/tiny.versions").iterdir())
    same = subprocess.run(
        [str(Path(PROGRAM).with_name("kestrel-reconfigure")), "--root", str(root.root), "--image", "tiny"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert same.returncode == 0, same.stderr
    assert f"tiny unchanged: version {v4['version']} stays current, nothing published" in same.stderr.splitlines()
    assert manifest(root) == v4
    assert sorted(p.name for p in root.path("/srv/kestrel/images/tiny.versions").iterdir()) == kept

    # shell: a chroot into a new version, fed from stdin here; exit 1 discards it, exit 0 publishes it
    discard = images(root, "shell", "tiny", stdin="touch /etc/nope\nexit 1\n")
    assert discard.returncode == 1 and "changes discarded, tiny unchanged" in discard.stderr, discard.stderr
    assert manifest(root)["version"] == v4["version"]
    shell = images(root, "shell", "tiny", stdin="echo made > /etc/shell-made\ncat /etc/chroot-saw\n")
    assert shell.returncode == 0 and shell.stdout == "tiny configure 10.10.0.1\n", shell.stderr
    v5 = manifest(root)
    assert (root.path(v5["root"]) / "etc/shell-made").read_text() == "made\n"
    assert not (root.path(v4["root"]) / "etc/shell-made").exists()
    assert not (root.path(v5["root"]) / "etc/nope").exists()
    assert chroot.mounts_under(root.root) == []

    before = tree_state(root.root)
    planned = images(root, "remove", "tiny", "--dry-run")
    assert planned.returncode == 0 and tree_state(root.root) == before, planned.stderr
    gone = images(root, "remove", "tiny")
    steps = [line.replace("Would remove", "Removed") for line in planned.stdout.splitlines()[:-1]]
    assert steps == gone.stderr.splitlines()[: len(steps)]
    assert gone.returncode == 0, gone.stderr
    assert not root.path("/var/lib/kestrel/images/tiny.json").exists()
    assert not root.path("/srv/kestrel/images/tiny.versions").exists()
    assert not root.path("/var/log/kestrel/images/tiny").exists()
    assert images(root, "remove", "tiny").returncode == 2


def test_bad_definition_is_located(tree: Sysroot) -> None:
    need_root()
    tree.path("/etc/kestrel/images/bad.yaml").write_text("suite: bookworm\nbootstrap:\n  method: zip\n")
    out = images(tree, "build", "bad")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"kestrel-images: {tree.path('/etc/kestrel/images/bad.yaml')}:3: bootstrap.method: "
        "input should be 'mmdebstrap', 'debootstrap' or 'tarball' (got 'zip')"
    )


def test_chroot_failures_read_like_any_command(tmp_path: Path) -> None:
    """The runner's one sentence, inside an image: the command, where, how it ended, the last stderr line."""
    need_root()
    busybox_tarball(tmp_path / "tiny.tar", tmp_path)
    tree = tmp_path / "busybox-root"
    inside = chroot.Chroot(tree)

    def said(argv: list[str], timeout: float = 30) -> str:
        result = runner.run(argv, via=inside, timeout=timeout, check=False)
        assert not result.ok
        return result.sentence()

    ok = runner.run(["sh", "-c", "test -c /dev/null && echo $$"], via=inside)  # pid 1 of its own namespace
    assert ok.where == f"in chroot {tree}" and ok.stdout == "1\n"
    assert said(["sh", "-c", "echo first >&2; echo last >&2; exit 4"]) == (
        f"'sh -c echo first ...' in chroot {tree}: exit code 4: last"
    )
    missing = said(["kt-no-such-command"])  # chroot(1) says it, quoting as the locale does
    assert re.fullmatch(
        f"'kt-no-such-command' in chroot {re.escape(str(tree))}: exit code 127: chroot: "
        "failed to run command .kt-no-such-command.: No such file or directory",
        missing,
    ), missing
    assert said(["sleep", "30"], timeout=0.5) == f"'sleep 30' in chroot {tree}: timed out after 0.5 s"
    with pytest.raises(CommandError, match=r"^'false' in chroot .*/busybox-root: exit code 1$"):
        runner.run(["false"], via=inside)
    assert chroot.mounts_under(tree) == []
