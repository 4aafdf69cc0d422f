"""kestrel-apt's two spellings reach the same update. The image update itself is replaced by a recorder
here (argument parsing only); tests/integration/test_images_debian.py runs the real apt in a real image."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from kestrel.cli import apt
from kestrel.images import build
from kestrel.sysroot import Sysroot


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def record(root: Any, config: Any, name: str, **kw: Any) -> None:
        seen.append((name, kw["apt_steps"]))

    monkeypatch.setattr(build, "update_image", record)
    return seen


def invoke(tree: Sysroot, *args: str) -> Any:
    return CliRunner().invoke(apt.command, ["--root", str(tree.root), *args])


def test_plain_spelling(tree: Sysroot, calls: list) -> None:
    result = invoke(tree, "default", "install", "-y", "htop")
    assert result.exit_code == 0, result.output
    assert calls == [("default", [["install", "-y", "htop"]])]


def test_kestrelhpc_spelling(tree: Sysroot, calls: list) -> None:
    result = invoke(tree, "--image", "mpi", "--install", "htop", "--install", "gcc", "--uninstall", "nano")
    assert result.exit_code == 0, result.output
    assert calls == [("mpi", [["install", "--no-install-recommends", "htop", "gcc"], ["remove", "--purge", "nano"]])]


def test_nothing_to_do(tree: Sysroot, calls: list) -> None:
    with pytest.raises(Exception, match="nothing to do"):
        CliRunner().invoke(
            apt.command, ["--root", str(tree.root), "--image", "x"], standalone_mode=False, catch_exceptions=False
        )
    assert calls == []
