"""ruff and mypy run as tests, so CI fails on either."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "kestrel", "tests",
                           "bench"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "kestrel"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_benchmarks_start() -> None:
    """bench/ is not collected by pytest: its scripts must still import what they use (--help runs the imports)."""
    for script in sorted((REPO / "bench").glob("bench_*.py")):
        proc = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr[-2000:]}"
