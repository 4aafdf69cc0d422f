"""The man pages: generated from the click commands, equal to the committed docs/man (--update-golden rewrites
them), complete (every program, every visible subcommand and option), and readable by man."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from kestrel.cli import manpages
from kestrel.cli.completion import program_commands
from tests.conftest import REPO

COMMITTED = REPO / "docs" / "man"


def test_committed_pages_are_the_generated_ones(tmp_path: Path, update_golden: bool) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kestrel.cli.manpages", str(tmp_path)], capture_output=True, text=True, check=True
    )
    written = sorted(Path(line).name for line in proc.stdout.splitlines())
    assert written == sorted(f"{name}.8" for name in program_commands())
    if update_golden:
        shutil.rmtree(COMMITTED, ignore_errors=True)
        shutil.copytree(tmp_path, COMMITTED)
    stale = [p.name for p in sorted(tmp_path.iterdir()) if not (COMMITTED / p.name).is_file()]
    stale += [p.name for p in sorted(COMMITTED.iterdir()) if not (tmp_path / p.name).is_file()]
    stale += [p.name for p in sorted(tmp_path.iterdir()) if (COMMITTED / p.name).read_text() != p.read_text()]
    assert stale == [], "docs/man is stale: ./run-tests tests/unit/test_manpages.py --update-golden"


@pytest.mark.parametrize("name", sorted(program_commands()))
def test_each_page_names_every_subcommand_and_option(name: str) -> None:
    command = program_commands()[name]
    page = manpages.render_pages()[f"{name}.8"]
    commands = [command] + list(command.commands.values() if isinstance(command, click.Group) else [])
    for c in commands:
        if c.hidden:
            continue
        if c is not command:
            assert f"\\fB{manpages.escape(f'{name} {c.name}')}\\fR" in page
        for param in c.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert manpages.escape(param.opts[-1]) in page, (c.name, param.opts)


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_reads_them() -> None:
    proc = subprocess.run(
        ["man", "-l", "-Tutf8", str(COMMITTED / "kestrel-nodes.8")],
        capture_output=True,
        text=True,
        check=False,
        env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    shown = re.sub(".\b", "", proc.stdout).replace("\u2010", "-")  # without the overstrike bold
    assert "kestrel-nodes show [OPTIONS] NAME" in shown
    assert "warning" not in proc.stderr
