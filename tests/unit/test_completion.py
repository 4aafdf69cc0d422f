"""Bash completion as bash asks for it: commands, options, and node, group, image names read from --root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kestrel.cli import completion
from kestrel.sysroot import Sysroot
from tests.treestate import kestrel


def complete(program: str, words: str, env: dict[str, str] | None = None) -> list[str]:
    """What PROGRAM offers for the last of WORDS (bash's COMP_WORDS; a trailing space: a new empty word)."""
    split = words.split(" ")
    var = "_" + program.upper().replace("-", "_") + "_COMPLETE"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
    proc = subprocess.run(
        [sys.executable, "-m", f"kestrel.cli.{program.removeprefix('kestrel-') or 'kestrel'}"],
        env={**clean, **(env or {}), var: "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(split) - 1)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if line]


@pytest.fixture
def cluster(tree: Sysroot) -> Sysroot:
    for i in (1, 2, 3):
        assert kestrel("nodes", tree.root, "add", "--mac", f"52:54:00:aa:bb:0{i}").returncode == 0
    assert kestrel("nodes", tree.root, "set", "node03", "--group", "gpu").returncode == 0
    tree.path("/etc/kestrel/images/mpi.yaml").write_text("from: default\n")
    return tree


def test_node_group_and_image_names_come_from_the_root(cluster: Sysroot) -> None:
    r = str(cluster.root)
    assert complete("kestrel-nodes", f"kestrel-nodes --root {r} show no") == ["node01", "node02", "node03"]
    # --root after the subcommand counts too; a host list completes its last name
    assert complete("kestrel-nodes", f"kestrel-nodes list --root {r} node01,no") == ["node01,node02", "node01,node03"]
    assert complete("kestrel-nodes", f"kestrel-nodes list --root {r} -v node0") == ["node01", "node02", "node03"]
    assert complete("kestrel-nodes", f"kestrel-nodes --root {r} remove @") == ["@compute", "@gpu"]
    assert complete("kestrel-nodes", f"kestrel-nodes --root {r} check --group ") == ["compute", "gpu"]
    assert "mpi" in complete("kestrel-images", f"kestrel-images --root {r} build m")
    assert complete("kestrel-nodes", "kestrel-nodes show no", {"KESTREL_ROOT": r}) == ["node01", "node02", "node03"]


def test_commands_and_options_complete(cluster: Sysroot) -> None:
    assert complete("kestrel-nodes", "kestrel-nodes sh") == ["show"]
    assert complete("kestrel-images", "kestrel-images list --j") == ["--json"]
    assert "--root" in complete("kestrel-nodes", "kestrel-nodes --r")


def test_an_unreadable_root_completes_nothing(tmp_path: Path) -> None:
    (tmp_path / "etc" / "kestrel").mkdir(parents=True)
    (tmp_path / "etc" / "kestrel" / "nodes").write_text("garbage\n")
    assert complete("kestrel-nodes", f"kestrel-nodes --root {tmp_path} show n") == []


def test_a_script_per_program(tmp_path: Path) -> None:
    written = completion.write_scripts(tmp_path)
    assert sorted(p.name for p in written) == sorted(completion.program_commands())
    script = (tmp_path / "kestrel-nodes").read_text()
    assert "_KESTREL_NODES_COMPLETE=bash_complete" in script and "complete -o nosort -F" in script
