"""Lint as tests, so CI fails on any: ruff check, ruff format --check, mypy; and the benchmarks still start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "--output-format", "concise", "kestrel", "tests", "bench"],
        ["ruff", "format", "--check", "kestrel", "tests", "bench"],
        ["mypy", "--no-error-summary", "kestrel", "tests", "bench"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_lint_is_clean(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_benchmarks_start() -> None:
    """bench/ is not collected by pytest: its scripts must still import what they use (--help runs the imports)."""
    for script in sorted((REPO / "bench").glob("bench_*.py")):
        proc = subprocess.run(
            [sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{script.name}: {proc.stderr[-2000:]}"
