"""shellcheck runs as a test over every shell script of the project, the rendered lease hook included.

shellcheck is a Debian package that setup.sh installs: a machine without it fails here rather than skipping.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kestrel import templates
from kestrel.sysroot import Sysroot
from tests.conftest import REPO

SHELLS = {"sh", "bash", "dash"}


def shell_of(path: Path) -> str | None:
    """The shell named by PATH's #! line (#!/bin/sh, #!/usr/bin/env bash, ...), or None."""
    try:
        with path.open("rb") as f:
            first = f.readline(200)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if words and Path(words[0]).name == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words:
        return None
    name = Path(words[0]).name
    return name if name in SHELLS else None


def script_folders() -> list[Path]:
    """Where the project keeps shell scripts. The mmdebstrap hooks are found wherever kestrel/ keeps them."""
    return [REPO / "phases", *sorted(REPO.glob("kestrel/**/mmdebstrap-hooks")), REPO / ".ci", REPO / "bench"]


def shell_scripts() -> list[Path]:
    """Every file with a sh/bash/dash #! line: the top-level scripts and those under script_folders().
    Files without one (the package lists of phases/*/packages.d) are not scripts and are left out."""
    candidates = [p for p in REPO.iterdir() if p.is_file()]
    for folder in script_folders():
        if folder.is_dir():
            candidates += [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(p for p in set(candidates) if shell_of(p))


def shellcheck(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed: run ./setup.sh (apt-get install shellcheck)"
    # -x follows `. file` where the file is given; each script's dialect comes from its own #! line.
    return subprocess.run(
        [exe, "-x", "--format", "gcc", *map(str, paths)], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = shell_scripts()
    found = {p.relative_to(REPO).parts[0] for p in scripts}
    # A folder that moved would otherwise drop out of the check without a word.
    for expected in ("setup.sh", "run-tests", "phases", "kestrel"):
        assert expected in found, f"no shell script found under {expected}: moved? {sorted(found)}"
    proc = shellcheck(scripts)
    assert proc.returncode == 0, "\n".join([*map(str, scripts), "", proc.stdout, proc.stderr])


def test_rendered_lease_hook_passes_shellcheck(tmp_path: Path) -> None:
    """The hook is a Jinja template: shellcheck reads it as kestrel-reconfigure writes it into a scratch tree."""
    shutil.copytree(REPO / "etc-kestrel", tmp_path / "etc" / "kestrel")
    config = tmp_path / "etc" / "kestrel" / "kestrel.yaml"
    reconfigure = Path(sys.executable).with_name("kestrel-reconfigure")
    proc = subprocess.run(
        [str(reconfigure), "-q", "--root", str(tmp_path), "--config", str(config), "--frontend"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hook = tmp_path / "usr" / "local" / "lib" / "kestrel" / "lease-hook"
    assert shell_of(hook) == "sh", hook.read_text()
    proc = shellcheck([hook])
    assert proc.returncode == 0, hook.read_text() + "\n" + proc.stdout + proc.stderr


def test_rendered_container_init_passes_shellcheck(tmp_path: Path) -> None:
    """A container node's init is a template too: shellcheck reads it as kestrel-vm renders it."""
    init = tmp_path / "container-init"
    init.write_text(templates.render(Sysroot(tmp_path), "container-init"))
    assert shell_of(init) == "sh"
    proc = shellcheck([init])
    assert proc.returncode == 0, init.read_text() + "\n" + proc.stdout + proc.stderr
