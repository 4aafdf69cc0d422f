"""Kestrel's own systemd units on a real frontend: every template named unit-kestrel-NAME.{service,timer}
(shipped or an admin's) becomes /etc/systemd/system/kestrel-NAME.*, written through the frontend's plan and
enabled and started (or restarted) by its service action. A template that renders to nothing (a module that
is off) installs no unit; a unit whose template went away is removed."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from kestrel import runner
from kestrel.config import Config
from kestrel.plan import Action, Desired
from kestrel.sysroot import Sysroot, encode
from kestrel.templates import ADMIN_TEMPLATES, render

UNIT_DIR = "/etc/systemd/system"
PREFIX = "unit-"
OWNED = (UNIT_DIR, "kestrel-*")
_SUFFIXES = (".service", ".timer", ".path", ".socket")
_SHIPPED = Path(__file__).resolve().parent.parent / "templates"


def template_names(root: Sysroot) -> list[str]:
    """The unit templates, shipped and the admin's (same name: the admin's wins when rendered)."""
    found = {p.name for p in _SHIPPED.glob(f"{PREFIX}kestrel-*")}
    admin = root.path(ADMIN_TEMPLATES)
    if admin.is_dir():
        found |= {p.name for p in admin.glob(f"{PREFIX}kestrel-*")}
    return sorted(n for n in found if n.endswith(_SUFFIXES))


def unit_files(root: Sysroot, config: Config) -> list[Desired]:
    """The units of a real frontend (none for a supervised tree: the lab runs its processes itself)."""
    if not root.uses_systemd:
        return []
    out = []
    context = dict(config=config, python=sys.executable, tree=str(root.root), kestrel=_kestrel_exec)
    for name in template_names(root):
        text = render(root, name, **context)
        if text.strip():
            unit = name.removeprefix(PREFIX)
            out.append(Desired(f"{UNIT_DIR}/{unit}", encode(text), on_change=(unit, Action.RESTART)))
    return out


def _kestrel_exec(program: str, *args: str) -> str:
    """An ExecStart= line's command: Kestrel's PROGRAM from this install, isolated (runner.kestrel_argv)."""
    return shlex.join(runner.kestrel_argv(program, *args))


def is_unit(service: str) -> bool:
    """A service action's name that is one of Kestrel's own units (kestrel-NAME.service or .timer)."""
    return service.startswith("kestrel-") and service.endswith(_SUFFIXES)
