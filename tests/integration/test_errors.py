"""The error boundary, through the programs users run (the installed console scripts, in a process of their own):
every failure is one line `PROG: message`, exit 1 (runtime) or 2 (bad input), and no traceback without --debug."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kestrel import runner
from tests.conftest import REPO, need_root

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A --root that the user nobody may read (tmp_path's parents are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="kt-errors-"))
    folder.chmod(0o755)
    shutil.copytree(REPO / "etc-kestrel", folder / "etc/kestrel")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def reconfigure(root: Path, *extra: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*(prefix or []), str(BIN / "kestrel-reconfigure"), "--root", str(root), "--frontend", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kestrel-reconfigure: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_not_root(scratch: Path) -> None:
    need_root()
    line = one_line(reconfigure(scratch, prefix=NOBODY), 1)
    assert line == (
        f"kestrel-reconfigure: {scratch}/var: Permission denied (Kestrel changes system files: run it as root)"
    )
    assert not (scratch / "etc/dnsmasq.d").exists()


def test_unreadable_config(scratch: Path) -> None:
    need_root()
    (scratch / "etc/kestrel/kestrel.yaml").chmod(0o600)
    line = one_line(reconfigure(scratch, prefix=NOBODY), 2)
    assert line.startswith(f"kestrel-reconfigure: {scratch}/etc/kestrel/kestrel.yaml: cannot read: ")
    assert "Permission denied" in line


def test_template_syntax_error(scratch: Path) -> None:
    override = scratch / "etc/kestrel/templates/hosts-block"
    override.parent.mkdir(parents=True)
    override.write_text("# {{ header }}\n{% for n in nodes %}\n{% if %}\n")
    line = one_line(reconfigure(scratch), 2)
    assert line == (
        f"kestrel-reconfigure: {override}:3: template syntax error: "
        "Expected an expression, got 'end of statement block'"
    )
    assert not (scratch / "etc/dnsmasq.d").exists()


def test_template_undefined_variable(scratch: Path) -> None:
    override = scratch / "etc/kestrel/templates/dnsmasq.conf"
    override.parent.mkdir(parents=True)
    override.write_text("# {{ header }}\nport=0\ninterface={{ config.network.interface }}\nx={{ no_such_thing }}\n")
    line = one_line(reconfigure(scratch), 2)
    assert line == f"kestrel-reconfigure: {override}:4: template error: 'no_such_thing' is undefined"
    # --debug shows where, for a bug report
    debug = reconfigure(scratch, "--debug")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


def test_missing_root_directory(tmp_path: Path) -> None:
    line = one_line(reconfigure(tmp_path / "nope"), 2)
    assert line == f"kestrel-reconfigure: --root {tmp_path / 'nope'}: no such directory"


def test_disk_full(scratch: Path) -> None:
    """A small tmpfs filled up: the first file that does not fit is named, and nothing is half-written."""
    need_root()
    disk = scratch / "srv"
    disk.mkdir()
    runner.run(["mount", "-t", "tmpfs", "-o", "size=256k", "kt-full", str(disk)])
    try:
        with open(disk / "filler", "wb") as f:
            with pytest.raises(OSError):
                while True:
                    f.write(os.urandom(65536))
                    f.flush()
        line = one_line(reconfigure(scratch), 1)
        assert line.startswith(f"kestrel-reconfigure: {disk}/kestrel/") and line.endswith(
            ": cannot write: No space left on device"
        ), line
        leftovers = [p for p in disk.rglob("*") if p.name.endswith(".kestrel-tmp")]
        assert leftovers == []
    finally:
        runner.run(["umount", str(disk)])
