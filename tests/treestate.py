"""What a dry run must leave as it found: every entry of a tree with its kind, mode, mtime and content."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

Entry = tuple[int, int, int, int, bytes | str | None]  # mode, uid, gid, mtime (ns), content (bytes, link target)


def tree_state(root: Path) -> dict[str, Entry]:
    """Every file, folder and link under ROOT (ROOT too), without following links; a missing ROOT is empty."""
    if not os.path.lexists(root):
        return {}
    found: dict[str, Entry] = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(folder) / name
            st = path.lstat()
            content: bytes | str | None = None
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = path.read_bytes()
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, content)
    return found


def assert_unchanged(before: dict[str, Entry], root: Path) -> None:
    """Nothing under ROOT changed since BEFORE (tree_state): not a byte, mode, owner or mtime, no new entry."""
    assert tree_state(root) == before


def kestrel(
    program: str, root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real program (python -m kestrel.cli.PROGRAM --root ROOT ARGS), without the caller's KESTREL_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
    return subprocess.run(
        [sys.executable, "-m", f"kestrel.cli.{program}", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def dry_run(
    program: str, root: Path, *args: str, env: dict[str, str] | None = None, busy: tuple[str, ...] = ()
) -> list[str]:
    """The lines a dry run prints on stdout; it must exit 0 and leave ROOT exactly as it was (but BUSY: folders
    where processes that run meanwhile write, such as qemu its console log)."""
    before = _without(tree_state(root), busy)
    proc = kestrel(program, root, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert _without(tree_state(root), busy) == before
    return proc.stdout.splitlines()


def _without(state: dict[str, Entry], busy: tuple[str, ...]) -> dict[str, Entry]:
    return {
        path: entry
        for path, entry in state.items()
        if not any(path == folder or path.startswith(f"{folder}/") for folder in busy)
    }
