"""Phase scripts: discovery, same-name override, order, module filter, run-once hashing, environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.images import apt, phases, scripts
from kestrel.images.phases import Target
from kestrel.images.scripts import Side
from kestrel.overrides import Origin
from kestrel.sysroot import Sysroot
from tests.conftest import said

SHIPPED = Path(__file__).resolve().parents[2] / "phases"


def script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\nset -e\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Sysroot, Path]:
    root = Sysroot(tmp_path / "root")
    shipped = tmp_path / "shipped"
    for name in ("core_b-second", "core_a-first_chroot", "mpi_x"):
        script(shipped / "node/configure.d", name, "true")
    script(shipped / "node/install.d", "core_setup", "true")
    return root, shipped


def test_discover_merges_overrides_and_sorts(layout: tuple[Sysroot, Path]) -> None:
    root, shipped = layout
    admin = root.path("/etc/kestrel/node/configure.d")
    script(admin, "core_b-second", "echo mine")
    script(admin, "site_added", "true")
    found = scripts.discover(root, Side.NODE, "configure", shipped)
    assert [(s.name, s.origin) for s in found] == [
        ("core_a-first_chroot", Origin.SHIPPED),
        ("core_b-second", Origin.OVERRIDDEN),
        ("mpi_x", Origin.SHIPPED),
        ("site_added", Origin.ADDED),
    ]
    assert found[1].path == admin / "core_b-second"
    assert found[0].in_chroot and not found[1].in_chroot
    assert [s.module for s in found] == ["core", "core", "mpi", "site"]


def test_only_enabled_modules_run(layout: tuple[Sysroot, Path]) -> None:
    root, shipped = layout
    assert [s.name for s in scripts.effective(root, Side.NODE, "configure", ["mpi"], shipped)] == ["mpi_x"]
    assert scripts.effective(root, Side.NODE, "configure", [], shipped) == []


@pytest.mark.parametrize("bad", ["nomodule", "core_chroot", "Core_x", "core_", "_x", "core_a b"])
def test_bad_script_names_are_refused(tmp_path: Path, bad: str) -> None:
    script(tmp_path / "node/install.d", bad, "true")
    with pytest.raises(InputError, match=r"a phase script is named MODULE_NAME or MODULE_NAME_chroot"):
        scripts.discover(Sysroot(tmp_path / "root"), Side.NODE, "install", tmp_path)


def test_shipped_modules_are_well_named() -> None:
    root = Sysroot("/nonexistent-kestrel-root")
    modules = {s.module for p in scripts.PHASES for s in scripts.discover(root, Side.NODE, p)}
    assert modules == {"core", "nfsroot", "sshd", "openmpi", "mpich", "web", "slurm"}
    kernel = [s for s in scripts.discover(root, Side.NODE, "packages") if s.name == "nfsroot_kernel"][0]
    assert "linux-image-amd64" in scripts.read_package_list(kernel)


def test_package_list_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "core_pkgs"
    path.write_text("# comment\nfoo bar  # two\nBad;pkg\n")
    s = scripts.Script("packages", "core_pkgs", path, Origin.ADDED)
    with pytest.raises(InputError) as e:
        scripts.read_package_list(s)
    assert str(e.value) == f"{path}:3: 'Bad;pkg' is not a Debian package name (a-z, 0-9, '+', '-', '.')"
    path.write_text("# comment\nfoo libstdc++6  # two\n")
    assert scripts.read_package_list(s) == ["foo", "libstdc++6"]


def frontend_target(tmp_path: Path, modules: list[str]) -> Target:
    return Target(Sysroot(tmp_path / "root"), Config(), modules, shipped=tmp_path / "shipped")


def test_run_once_is_recorded_with_the_script_hash(tmp_path: Path) -> None:
    target = frontend_target(tmp_path, ["core"])
    out = tmp_path / "runs"
    install = script(tmp_path / "shipped/frontend/install.d", "core_once", f"echo install >> {out}")
    script(tmp_path / "shipped/frontend/configure.d", "core_every", f"echo configure >> {out}")
    with said() as lines:
        phases.run_phases(target)
        phases.run_phases(target)
    assert out.read_text().split() == ["install", "configure", "configure"]
    assert lines == [
        "Executing : frontend_core_once",
        "Executing : frontend_core_every",
        "Executing : frontend_core_every",
    ]
    state = json.loads(target.state_path.read_text())
    assert state == {"install/core_once": scripts.Script("install", "core_once", install, Origin.SHIPPED).digest()}
    install.write_text(install.read_text() + "# changed\n")
    phases.run_phases(target)
    assert out.read_text().split()[-2:] == ["install", "configure"]
    phases.run_phases(target, force=True)
    assert out.read_text().split()[-2:] == ["install", "configure"]
    phases.run_phases(target, phases=("install",))
    assert out.read_text().split()[-1] == "configure"  # nothing ran


def test_environment(tmp_path: Path) -> None:
    target = frontend_target(tmp_path, ["core"])
    dump = tmp_path / "env.json"
    script(
        tmp_path / "shipped/frontend/configure.d",
        "core_env",
        f"python3 -c 'import json, os; print(json.dumps(dict(os.environ)))' > {dump}",
    )
    phases.run_phases(target)
    env = json.loads(dump.read_text())
    assert env["KESTREL_PHASE"] == "configure"
    assert env["KESTREL_ROOT"] == str(tmp_path / "root")
    assert env["KESTREL_FRONTEND_IP"] == "10.10.0.1"
    assert env["KESTREL_NETWORK"] == "10.10.0.0/24"
    assert env["KESTREL_DOMAIN"] == "cluster.local"
    assert json.loads(env["KESTREL_CONFIG_JSON"])["modules"] == ["core", "nfsroot", "sshd", "openmpi"]
    assert "KESTREL_IMAGE" not in env  # the frontend side has no image

    image_env = phases.script_env(Config(), target.root, "install", "default", "/srv/x")
    assert image_env["KESTREL_IMAGE"] == "default" and image_env["KESTREL_IMAGE_ROOT"] == "/srv/x"


def test_failing_script_stops_with_name_code_and_tail(tmp_path: Path) -> None:
    target = frontend_target(tmp_path, ["core"])
    out = tmp_path / "ran"
    script(tmp_path / "shipped/frontend/configure.d", "core_1-bad", "echo line-one\necho boom >&2\nexit 3")
    script(tmp_path / "shipped/frontend/configure.d", "core_2-after", f"touch {out}")
    with said() as lines, pytest.raises(apt.ScriptFailed) as e:
        phases.run_phases(target)
    message = str(e.value)
    assert message.startswith("core_1-bad (")
    assert "failed: exit code 3; last lines of " in message
    assert message.endswith("    line-one\n    boom")
    assert not out.exists()
    assert lines == ["Executing : frontend_core_1-bad"]
    assert "boom" in target.log_path("configure").read_text()


def test_explain_shows_origin_and_status(layout: tuple[Sysroot, Path]) -> None:
    root, shipped = layout
    script(root.path("/etc/kestrel/node/install.d"), "core_setup", "echo mine")
    rows = scripts.explain(root, Side.NODE, ["core"], {}, shipped)
    by_name = {r["script"]: r for r in rows}
    assert by_name["core_setup"]["origin"] == "overridden" and by_name["core_setup"]["status"] == "never ran"
    assert by_name["core_a-first_chroot"]["where"] == "chroot"
    assert by_name["mpi_x"]["status"] == "module off"
    assert by_name["core_b-second"]["status"] == "every time"
