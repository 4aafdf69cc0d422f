"""A wheel that works: `pip wheel` of the source, installed into a fresh venv (not editable, no source tree on the
path), builds the tiny image with shipped and admin phase scripts, renders a frontend under a scratch --root, and
the rendered lease hook registers a node through that venv only. Needs the package index pip is configured with
(the wheel's dependencies)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from kestrel.images import chroot
from kestrel.sysroot import Sysroot
from tests.conftest import REPO
from tests.integration.test_images_tiny import manifest, tiny  # noqa: F401 (tiny: the tiny image's fixture)

# Each folder of the source whose files the wheel must carry, and where they land in it.
SHIPPED = {
    "phases": "kestrel/data/phases",
    "images": "kestrel/data/images",
    "etc-kestrel": "kestrel/data/etc-kestrel",
    "kestrel/templates": "kestrel/templates",
    "kestrel/images/mmdebstrap-hooks": "kestrel/images/mmdebstrap-hooks",
}
# What a checkout holds besides its source (.gitignore): a build from the repository itself would package whatever
# an earlier build left in build/lib, and could hide a file the package data no longer selects.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "scratch"
)
MAC, IP = "52:54:00:7e:00:01", "10.10.0.50"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Python's variables (PYTHONPATH, ...), a venv, or a PATH entry in the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(REPO)
    )
    return env | extra


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=cwd, env=clean_env() if env is None else env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{shlex.join(argv)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass(frozen=True)
class Install:
    source: Path  # the copy of the source the wheel was built from (setuptools' build/ is in there)
    wheel: Path
    venv: Path
    package: Path  # the kestrel/ folder the venv imports
    work: Path  # outside the repository: the programs run here

    def run(self, program: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.venv / "bin" / program), *args], cwd=self.work, env=clean_env(**env))


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    base = tmp_path_factory.mktemp("wheel")
    source, dist, venv, work = base / "source", base / "dist", base / "venv", base / "work"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    work.mkdir()
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(dist)], cwd=work)
    (wheel,) = dist.glob("kestrel-*.whl")
    # a fresh venv of the base interpreter (not the repository's .venv), the wheel and its dependencies from the index
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    run([str(python), "-m", "venv", str(venv)], cwd=work)
    run([str(venv / "bin" / "pip"), "install", str(wheel)], cwd=work)
    found = run([str(venv / "bin" / "python"), "-c", "import kestrel; print(kestrel.__file__)"], cwd=work)
    package = Path(found.stdout.strip()).parent
    assert package.is_relative_to(venv), package
    return Install(source, wheel, venv, package, work)


def test_the_wheel_carries_the_shipped_files_with_their_modes(install: Install) -> None:
    names = set(zipfile.ZipFile(install.wheel).namelist())
    for folder, inside in SHIPPED.items():
        files = [p for p in sorted((REPO / folder).rglob("*")) if p.is_file()]
        assert files, folder
        for path in files:
            name = f"{inside}/{path.relative_to(REPO / folder).as_posix()}"
            assert name in names, f"{name} ({path}) is missing from {install.wheel.name}"
            installed = install.package.parent / name
            assert installed.is_file() and not installed.is_symlink(), installed
            # phase scripts and mmdebstrap's hooks run as programs: the x bit travels with them
            assert os.access(installed, os.X_OK) == os.access(path, os.X_OK), installed
    assert os.access(install.package / "images/mmdebstrap-hooks/setup50-kestrel-apt-cache", os.X_OK)


def test_tiny_image_with_shipped_and_admin_phase_scripts(install: Install, tiny: Sysroot) -> None:  # noqa: F811
    root = tiny
    # mpich's configure script is a shipped one: it runs from the wheel. Its package list is replaced by an empty
    # admin list of the same name (the busybox image has no apt).
    root.path("/etc/kestrel/images/tiny.yaml").write_text(
        "bootstrap: {method: tarball, tarball: /var/tmp/tiny.tar}\nmodules: [demo, mpich]\n"
    )
    packages = root.path("/etc/kestrel/node/packages.d/mpich_packages")
    packages.parent.mkdir(parents=True, exist_ok=True)
    packages.write_text("# none: the tiny image has no apt\n")

    install.run(
        "kestrel-images",
        "--root",
        str(root.root),
        "build",
        "tiny",
        KESTREL_CACHE_DIR=str(root.path("/var/cache/kestrel")),
    )
    image = root.path(manifest(root)["root"])
    assert (image / "etc/chroot-saw").read_text() == "tiny configure 10.10.0.1\n"  # admin, in the chroot
    assert (image / "etc/frontend-wrote").read_text() == "cluster.local\n"  # admin, on the frontend
    assert (image / "var/install-runs").read_text() == "run\n"
    environment = "FI_PROVIDER=sockets\nHYDRA_HOST_FILE=/etc/kestrel/hostfiles/mpich\n"
    assert (image / "etc/environment").read_text() == environment  # shipped
    assert not (image / "etc/must-not-exist").exists()
    assert chroot.mounts_under(root.root) == []

    explained = json.loads(install.run("kestrel-images", "--root", str(root.root), "explain", "tiny", "--json").stdout)
    (shipped,) = [r for r in explained if r["script"] == "mpich_hostfile"]
    assert shipped["origin"] == "shipped" and shipped["status"] == "every time"
    assert Path(shipped["path"]) == install.package / "data/phases/node/configure.d/mpich_hostfile"


def test_the_rendered_lease_hook_queues_and_the_venvs_registrar_registers(install: Install, tmp_path: Path) -> None:
    root = Sysroot(tmp_path / "frontend")
    shutil.copytree(install.package / "data/etc-kestrel", root.path("/etc/kestrel"))  # the wheel's defaults
    install.run("kestrel-reconfigure", "--root", str(root.root), "--frontend")

    hook = root.path("/usr/local/lib/kestrel/lease-hook")
    assert os.access(hook, os.X_OK)
    text = hook.read_text()
    for elsewhere in (REPO, install.source, install.venv):
        assert str(elsewhere) not in text, f"the hook names {elsewhere}:\n{text}"
    # dnsmasq runs it with an empty environment, from anywhere; it only queues the event (no Python).
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    run([str(hook), "add", MAC, IP], cwd=decoy, env={}, timeout=60)
    assert MAC not in root.path("/etc/kestrel/nodes").read_text()
    install.run("kestrel-nodes", "--root", str(root.root), "registrar", "--once")

    assert f"{MAC},set:img-default,set:grp-compute,{IP},node01" in root.path("/etc/kestrel/nodes").read_text()
    (node,) = json.loads(install.run("kestrel-nodes", "--root", str(root.root), "list", "--json").stdout)
    assert (node["mac"], node["ip"], node["name"], node["state"]) == (MAC, IP, "node01", "up")
    assert "node01" in root.path("/etc/kestrel/hostfiles/openmpi").read_text()
