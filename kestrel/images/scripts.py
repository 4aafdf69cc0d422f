"""Phase scripts as found on disk: shipped and admin folders merged by name, the module filter, the run-once state
and what `kestrel-images explain` shows. Running them is kestrel.images.phases."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kestrel import shipped
from kestrel.config import check_package
from kestrel.errors import InputError
from kestrel.inputfile import read_input
from kestrel.overrides import Origin, merge_by_name
from kestrel.sysroot import Sysroot, atomic_write

SHIPPED_DIR = shipped.PHASES


PHASES = ("install", "packages", "post-install", "configure")


RUN_ONCE = frozenset(PHASES[:3])


IMAGE_STATE = "/var/lib/kestrel/image-phases.json"  # inside the image: travels with its copies


FRONTEND_STATE = "/var/lib/kestrel/frontend-phases.json"


@dataclass(frozen=True)
class Script:
    """One effective phase script: its phase, name (MODULE_NAME[_chroot]), file and where it comes from."""

    phase: str
    name: str
    path: Path
    origin: Origin

    @property
    def module(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def in_chroot(self) -> bool:
        return self.name.endswith("_chroot")

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.name}"

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class Side(StrEnum):
    """Whose phase scripts: phases/frontend/ act on the frontend, phases/node/ on an image."""

    FRONTEND = "frontend"
    NODE = "node"


_SCRIPT_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*_[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_script_name(path: Path) -> str:
    """`<module>_<name>[_chroot]`: the module part is a plain name, the rest is not empty."""
    if not _SCRIPT_NAME.fullmatch(path.name) or path.name.partition("_")[2] == "chroot":
        raise InputError(
            f"{path}: a phase script is named MODULE_NAME or MODULE_NAME_chroot "
            "(a-z, 0-9, '-', '.'; then '_' and the name); rename it"
        )
    return path.name


def discover(root: Sysroot, side: Side, phase: str, shipped: Path = SHIPPED_DIR) -> list[Script]:
    """Every script of PHASE, shipped and admin, merged by name, in lexical order (no module filter)."""
    entries = merge_by_name(shipped / side / f"{phase}.d", root.path(f"/etc/kestrel/{side}/{phase}.d"))
    return [Script(phase, check_script_name(e.path), e.path, e.origin) for e in entries]


def effective(root: Sysroot, side: Side, phase: str, modules: list[str], shipped: Path = SHIPPED_DIR) -> list[Script]:
    """The scripts of PHASE that run: only those of enabled MODULES."""
    return [s for s in discover(root, side, phase, shipped) if s.module in modules]


def want_run(script: Script, state: dict[str, str], force: bool) -> bool:
    """configure always; install, packages, post-install when forced, never run, or changed since."""
    return script.phase not in RUN_ONCE or force or state.get(script.key) != script.digest()


def read_package_list(script: Script) -> list[str]:
    """A packages.d file: one package a line, '#' comments."""
    found = []
    for number, line in enumerate(read_input(script.path).decode("utf-8", "replace").splitlines(), 1):
        for word in line.split("#", 1)[0].split():
            try:
                found.append(check_package(word))
            except ValueError as e:
                raise InputError(f"{script.path}:{number}: {e}") from None
    return found


def load_state(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise InputError(f"{path}: not a phase state file: {e}") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_state(path: Path, state: dict[str, str]) -> None:
    atomic_write(path, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def explain(
    root: Sysroot, side: Side, modules: list[str], state: dict[str, str], shipped: Path = SHIPPED_DIR
) -> list[dict[str, str]]:
    """Every script of every phase: where it comes from, whether its module is enabled, whether it will run."""
    rows = []
    for phase in PHASES:
        for s in discover(root, side, phase, shipped):
            rows.append(
                {
                    "phase": phase,
                    "script": s.name,
                    "module": s.module,
                    "origin": str(s.origin),
                    "where": "list" if phase == "packages" else "chroot" if s.in_chroot else "frontend",
                    "status": script_status(s, state) if s.module in modules else "module off",
                    "path": str(s.path),
                }
            )
    return rows


def script_status(script: Script, state: dict[str, str]) -> str:
    """An enabled script: 'every time' (configure), 'never ran', 'done' or 'changed' (run-once phases)."""
    if script.phase not in RUN_ONCE:
        return "every time"
    if script.key not in state:
        return "never ran"
    return "done" if state[script.key] == script.digest() else "changed"
