"""The package's layers: no module imports a higher layer; every sub-package and module says what it is.

base (the modules directly in kestrel/) -> net -> nodes -> images -> users -> gateway -> slurm -> frontend -> status
-> vm -> lab -> cli.
A module may import its own layer or a lower one. Imports are read with `ast` at any depth (inside
functions and `if TYPE_CHECKING:` blocks too): `import kestrel.x`, `from kestrel import x`,
`from kestrel.x import y`, relative imports, and importlib.import_module("kestrel.x") with a literal name.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "kestrel"
# Lowest first; "" is the base layer: the modules directly in kestrel/ (and `kestrel` itself).
LAYERS = ["", "net", "nodes", "images", "users", "gateway", "slurm", "frontend", "status", "vm", "lab", "cli"]
RANK = {name: rank for rank, name in enumerate(LAYERS)}


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module under kestrel/; symlinked folders (kestrel/data/) are not code."""
    found = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (Path(folder) / d).is_symlink())
        for name in files:
            if name.endswith(".py"):
                path = Path(folder) / name
                parts = path.relative_to(REPO).with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return dict(sorted(found.items()))


def subpackages() -> list[Path]:
    """Folders under kestrel/ that hold Python code (data folders such as templates/ hold none)."""
    return sorted({path.parent for path in modules().values()} - {PACKAGE})


def layer_of(name: str) -> str:
    """'kestrel.nodes.ssh' or 'kestrel.nodes.ssh.Target' -> 'nodes'; 'kestrel.sysroot(.Sysroot)', 'kestrel' -> ''."""
    parts = name.split(".")
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").is_file() or not (PACKAGE / parts[1]).is_dir():
        return ""  # a base module (kestrel/templates.py, not the data folder beside it), or kestrel/__init__.py's
    return parts[1]


def imported(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every kestrel module that MODULE (with SOURCE) imports, at any depth of its syntax tree.

    `from A import b` yields A.b if that is a module (`from kestrel.frontend import desired`), else A.
    """
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.update(_module(f"{base}.{alias.name}", base) for alias in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            assert isinstance(arg, ast.Constant)
            out.add(str(arg.value))
    return {name for name in out if name == "kestrel" or name.startswith("kestrel.")}


def _module(name: str, parent: str) -> str:
    """NAME if it is a module or package under kestrel/, else PARENT (NAME is a function, class or constant)."""
    path = REPO.joinpath(*name.split("."))
    return name if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() else parent


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    literal = bool(call.args) and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
    return name in ("import_module", "__import__") and literal


def violations() -> list[str]:
    """`module (layer) -> imported (layer)` for every import of a higher layer."""
    bad = []
    for module, path in modules().items():
        own = layer_of(module)
        if own not in RANK:
            continue  # a sub-package with no layer: test_every_subpackage_has_a_layer names it
        for name in sorted(imported(module, path.read_text(), path.name == "__init__.py")):
            target = layer_of(name)
            if RANK.get(target, -1) > RANK[own]:
                bad.append(f"{module} ({own or 'base'}) -> {name} ({target})")
    return bad


def test_every_subpackage_has_a_layer() -> None:
    unknown = sorted({p.relative_to(PACKAGE).parts[0] for p in subpackages()} - set(LAYERS))
    assert not unknown, f"sub-packages with no layer (add them to LAYERS in {Path(__file__).name}): {unknown}"
    missing = [name for name in LAYERS[1:] if not (PACKAGE / name / "__init__.py").is_file()]
    assert not missing, f"layers with no sub-package kestrel/NAME/__init__.py: {missing}"


def test_no_module_imports_a_higher_layer() -> None:
    bad = violations()
    order = " -> ".join(name or "base" for name in LAYERS)
    assert not bad, f"imports of a higher layer (lowest first: {order}):\n  " + "\n  ".join(bad)


def test_the_import_reader_sees_every_spelling() -> None:
    """The reader itself: each spelling, at any depth, is seen (so the test above can fail)."""
    source = (
        "import kestrel.cli.nodes\n"
        "from kestrel import lab\n"
        "from kestrel.vm.qemu import start\n"
        "from . import registry\n"
        "from ..users import homes\n"
        "def f():\n"
        "    if True:\n"
        "        from kestrel.frontend import desired\n"
        "    importlib.import_module('kestrel.images.store')\n"
    )
    found = imported("kestrel.nodes.example", source)
    assert found == {
        "kestrel.cli.nodes",
        "kestrel.lab",
        "kestrel.vm.qemu",
        "kestrel.nodes.registry",
        "kestrel.users.homes",
        "kestrel.frontend.desired",
        "kestrel.images.store",
    }
    names = ["kestrel", "kestrel.sysroot.Sysroot", "kestrel.templates", "kestrel.vm.qemu.start", "kestrel.cli"]
    assert [layer_of(n) for n in names] == ["", "", "", "vm", "cli"]


def test_every_subpackage_has_a_one_line_docstring() -> None:
    problems = []
    for folder in subpackages():
        init = folder / "__init__.py"
        if not init.is_file():
            problems.append(f"{folder.relative_to(REPO)}/: no __init__.py")
            continue
        doc = (ast.get_docstring(ast.parse(init.read_text(), str(init))) or "").strip()
        if not doc:
            problems.append(f"{init.relative_to(REPO)}: no docstring")
        elif "\n" in doc:
            problems.append(f"{init.relative_to(REPO)}: a docstring of {len(doc.splitlines())} lines, not one")
    assert not problems, "\n".join(problems)


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(REPO))
        for path in modules().values()
        if not ast.get_docstring(ast.parse(path.read_text(), str(path)))
    ]
    assert not missing, "modules without a docstring:\n  " + "\n  ".join(missing)
