"""kestrel-apt's changes survive a rebuild: a minimal Debian image (mmdebstrap, no module: only the cached base and
apt), kestrel-apt installs one package and removes another, `kestrel-images build --force` starts again from the
base and the recorded changes are applied again; explain shows them. Real mmdebstrap and apt-get, from the Debian
mirror, with the shared base and apt caches (KESTREL_CACHE_DIR) of test_images_debian."""

from __future__ import annotations

import json

from kestrel.images import recorded
from kestrel.sysroot import Sysroot
from tests.conftest import need_root
from tests.integration.test_images_debian import kestrel


def installed(root: Sysroot, manifest: dict) -> set[str]:
    return recorded.installed_packages(root.path(manifest["root"]))


def current(root: Sysroot) -> dict:
    return json.loads(root.path("/var/lib/kestrel/images/mini.json").read_text())


def test_apt_changes_survive_a_forced_rebuild(tree: Sysroot) -> None:
    need_root()
    root = tree
    root.path("/etc/kestrel/images/mini.yaml").write_text("from: debian-bookworm\nmodules: []\n")
    kestrel("kestrel-images", root, "build", "mini")
    first = current(root)
    assert "netbase" in installed(root, first) and "hello" not in installed(root, first)

    apt = kestrel("kestrel-apt", root, "--image", "mini", "--install", "hello", "--uninstall", "netbase")
    path = root.path("/etc/kestrel/images/mini.apt")
    assert f"Recorded in {path}: install hello, remove netbase (a rebuild keeps it)" in apt.stderr
    assert [line for line in path.read_text().splitlines() if not line.startswith("#")] == [
        "install hello",
        "remove netbase",
    ]
    second = current(root)
    assert "hello" in installed(root, second) and "netbase" not in installed(root, second)
    # the packages phase counts as done for the recorded packages: an update build has nothing to do
    same = kestrel("kestrel-images", root, "build", "mini")
    assert "[1/1] publish: boot files, manifest ..." in same.stderr and "packages" not in same.stderr

    explained = json.loads(kestrel("kestrel-images", root, "explain", "mini", "--json").stdout)
    assert [(r["script"], r["origin"], r["status"], r["path"]) for r in explained if r["origin"] == "kestrel-apt"] == [
        ("install hello", "kestrel-apt", "done", str(path)),
        ("remove netbase", "kestrel-apt", "done", str(path)),
    ]

    # from the cached base again: the packages phase installs hello and removes netbase
    rebuilt = kestrel("kestrel-images", root, "build", "mini", "--force")
    assert "Using cached base" in rebuilt.stderr
    assert any(
        line.startswith("[2/3] packages: apt (1 package, removes netbase) ... ") for line in rebuilt.stderr.splitlines()
    )
    third = current(root)
    assert third["version"] != second["version"] and third["base"] == first["base"]
    assert "hello" in installed(root, third) and "netbase" not in installed(root, third)
    assert (root.path(third["root"]) / "usr/bin/hello").exists()
