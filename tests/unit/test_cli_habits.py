"""Habits of every kestrel-* program: -h and --version, global options before or after the subcommand."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import subprocess
import sys

import click
import pytest

from kestrel.cli import common
from kestrel.cli.nodes import command as nodes_command
from kestrel.sysroot import Sysroot
from tests.treestate import kestrel

PROGRAMS = sorted(ep.name for ep in md.distribution("kestrel").entry_points if ep.group == "console_scripts")
MODULES = {ep.name: ep.module for ep in md.distribution("kestrel").entry_points if ep.group == "console_scripts"}


def program(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", MODULES[name], *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_program_has_short_help_and_version(name: str) -> None:
    version = program(name, "--version")
    assert (version.returncode, version.stdout) == (0, f"{name} {md.version('kestrel')}\n")
    short, long = program(name, "-h"), program(name, "--help")
    assert short.returncode == 0 and short.stdout == long.stdout
    assert short.stdout.startswith(f"Usage: {name} ")
    assert "-h, --help" in short.stdout and "--version" in short.stdout


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_subcommand_takes_short_help(name: str) -> None:
    top = getattr(importlib.import_module(MODULES[name]), "command", None) or importlib.import_module(MODULES[name]).cli
    if not isinstance(top, click.Group):
        return
    for sub in top.list_commands(click.Context(top)):
        with click.Context(top, info_name=name, help_option_names=common.HELP_OPTIONS) as parent:
            command = top.get_command(parent, sub)
            assert command is not None
            ctx = command.make_context(sub, ["-h"], parent=parent, resilient_parsing=True)
            assert ctx.help_option_names == common.HELP_OPTIONS


def test_global_options_after_the_subcommand(tree: Sysroot) -> None:
    after = subprocess.run(
        [sys.executable, "-m", "kestrel.cli.nodes", "list", "--json", "--root", str(tree.root), "-vv", "--debug"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(kestrel("nodes", tree.root, "list", "--json").stdout)
    doctor = subprocess.run(
        [sys.executable, "-m", "kestrel.cli.kestrel", "uninstall", "--dry-run", f"--root={tree.root}", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert doctor.returncode == 0, doctor.stderr


@pytest.mark.parametrize(
    ("args", "lifted"),
    [
        (["list", "--root", "/r", "--json"], ["--root", "/r", "list", "--json"]),
        (["--root", "/r", "list", "-vq"], ["-vq", "--root", "/r", "list"]),
        (["list", "--config=/c", "--debug"], ["--config=/c", "--debug", "list"]),
        # a subcommand's own option value stays, whatever it looks like; nothing after -- moves
        (
            ["exec", "--user", "-v", "n1", "--", "ls", "--root", "/x"],
            ["exec", "--user", "-v", "n1", "--", "ls", "--root", "/x"],
        ),
        (["exec", "n1", "-q", "--", "-v"], ["-q", "exec", "n1", "--", "-v"]),
        (["--version"], ["--version"]),
        (["nosuch", "-v"], ["-v", "nosuch"]),
        (["exec", "--user", "bob", "-v", "n1"], ["-v", "exec", "--user", "bob", "n1"]),
    ],
)
def test_lift_options(args: list[str], lifted: list[str]) -> None:
    with click.Context(nodes_command) as ctx:
        assert common.lift_options(nodes_command, ctx, args) == lifted


def test_a_remote_command_keeps_its_options() -> None:
    from kestrel.cli.lab import command as lab_command

    with click.Context(lab_command) as ctx:
        lifted = common.lift_options(lab_command, ctx, ["ssh", "-q", "node01", "ls", "-v", "--root", "/"])
    assert lifted == ["-q", "ssh", "node01", "ls", "-v", "--root", "/"]
