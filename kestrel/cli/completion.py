"""Bash completion: node, group, image and user names read from the tree --root names; the scripts
setup.sh installs (python -m kestrel.cli.completion DIR writes one per program and prints its path)."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import click
from click.shell_completion import BashComplete, CompletionItem

from kestrel.cli.common import completion_var
from kestrel.config import DEFINITIONS_DIR
from kestrel.images import definitions, store
from kestrel.nodes import registry
from kestrel.sysroot import Sysroot
from kestrel.users.accountfiles import load_users

Complete = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def _root(ctx: click.Context) -> Sysroot:
    """The tree this command line names: its --root (before or after the subcommand), else KESTREL_ROOT or /."""
    at: click.Context | None = ctx
    while at is not None:
        if at.params.get("root"):
            return Sysroot(at.params["root"])
        at = at.parent
    return Sysroot(os.environ.get("KESTREL_ROOT", "/"))


def _matching(words: Iterable[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(w) for w in sorted(set(words)) if w.startswith(incomplete)]


def _quietly(read: Callable[[Sysroot], Iterable[str]]) -> Complete:
    """A completer from READ(root): a tree it cannot read completes nothing (completion never fails)."""

    def complete(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            return _matching(read(_root(ctx)), incomplete)
        except Exception:  # a half-set-up tree, a bad registry: no completion, never a traceback in the shell
            return []

    return complete


def _node_words(root: Sysroot) -> list[str]:
    nodes = registry.load_registry(root)
    return [n.name for n in nodes] + [f"@{n.group}" for n in nodes]


def _image_names(root: Sysroot) -> list[str]:
    defined = [p.stem for p in (root.path(DEFINITIONS_DIR).glob("*.yaml"))]
    shipped = [p.stem for p in definitions.SHIPPED_IMAGES.glob("*.yaml")]
    return [*defined, *shipped, *(i.name for i in store.published_images(root))]


def complete_nodes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Node names and @groups; after a comma, the next one of a host list (node01,no<TAB>)."""
    head, comma, last = incomplete.rpartition(",")
    named = set(head.split(","))
    found = _quietly(_node_words)(ctx, param, last)
    return [CompletionItem(f"{head}{comma}{item.value}") for item in found if item.value not in named]


complete_groups = _quietly(lambda root: [n.group for n in registry.load_registry(root)])
complete_images = _quietly(_image_names)
complete_users = _quietly(lambda root: [u.name for u in load_users(root)])


def program_commands() -> dict[str, click.Command]:
    """Every kestrel program's name and its click command."""
    found = {}
    for ep in md.distribution("kestrel").entry_points:
        if ep.group == "console_scripts":
            module = importlib.import_module(ep.module)
            found[ep.name] = getattr(module, "command", None) or module.cli
    return found


def write_scripts(folder: Path) -> list[Path]:
    """A bash completion script per program into FOLDER (bash-completion loads them by the program's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, command in sorted(program_commands().items()):
        path = folder / name
        path.write_text(BashComplete(command, {}, name, completion_var(name)).source())
        written.append(path)
    return written


if __name__ == "__main__":
    for written in write_scripts(Path(sys.argv[1])):
        print(written)
