"""Image definitions: lookup (admin first, then shipped), `from:` inheritance, located errors."""

from __future__ import annotations

import pytest

from kestrel.config import BootstrapMethod
from kestrel.errors import InputError
from kestrel.images import bootstrap, definitions
from kestrel.sysroot import Sysroot


def write(tree: Sysroot, name: str, text: str) -> str:
    path = tree.path(f"/etc/kestrel/images/{name}.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_default_is_the_shipped_bookworm(tree: Sysroot) -> None:
    default = definitions.load_definition(tree, "default")
    assert default == definitions.load_definition(tree, "debian-bookworm")
    assert default.suite == "bookworm" and default.bootstrap.method is BootstrapMethod.MMDEBSTRAP
    assert definitions.definition_path(tree, "debian-bookworm") == definitions.SHIPPED_IMAGES / "debian-bookworm.yaml"


def test_admin_keys_replace_the_parent(tree: Sysroot) -> None:
    write(tree, "mpi", "from: default\npackages: [htop]\nmodules: [core, mpich]\n")
    mpi = definitions.load_definition(tree, "mpi")
    assert mpi.packages == ["htop"] and mpi.modules == ["core", "mpich"] and mpi.suite == "bookworm"
    assert definitions.image_modules(mpi, ["core"]) == ["core", "mpich"]
    assert definitions.image_modules(definitions.load_definition(tree, "default"), ["core"]) == ["core"]
    # an admin copy of a shipped name wins, and may start from the shipped one
    write(tree, "debian-bookworm", "from: debian-bookworm\nvariant: buildd\n")
    assert definitions.load_definition(tree, "default").variant == "buildd"


def test_base_key_follows_what_the_base_holds(tree: Sysroot) -> None:
    default = definitions.load_definition(tree, "default")
    write(tree, "extra", "from: default\npackages: [htop]\ncmdline: quiet\n")
    assert bootstrap.base_key(definitions.load_definition(tree, "extra")) == bootstrap.base_key(default)
    write(tree, "other", "from: default\nbootstrap: {packages: [systemd-sysv]}\n")
    assert bootstrap.base_key(definitions.load_definition(tree, "other")) != bootstrap.base_key(default)
    assert bootstrap.sources_list(default).splitlines()[1:] == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "suite: bookworm\npackages: [ok, 'bad pkg']\n",
            "2: packages[1]: 'bad pkg' is not a Debian package name (a-z, 0-9, '+', '-', '.')",
        ),
        ("bootstrap:\n  method: tarball\n", "1: bootstrap: method 'tarball' needs 'tarball: PATH'"),
        (
            "mirror: ftp://x\n",
            "1: mirror: 'ftp://x' is not a mirror URL (http://, https:// or file:///, no spaces, quotes or '#')",
        ),
        (
            "cmdline: 'a; b'\n",
            "1: cmdline: 'a; b': a kernel command line cannot hold control characters, quotes, "
            "'#', '`', '$', ';', '\\' or braces",
        ),
        ("suite: bookworm\nsutie: x\n", "2: sutie: unknown key"),
    ],
)
def test_errors_are_located(tree: Sysroot, text: str, error: str) -> None:
    path = write(tree, "bad", text)
    with pytest.raises(InputError) as e:
        definitions.load_definition(tree, "bad")
    assert str(e.value) == f"{path}:{error}"


def test_missing_loops_and_bad_names(tree: Sysroot) -> None:
    with pytest.raises(InputError, match=r"no image definition 'nope': looked for .*/etc/kestrel/images/nope.yaml"):
        definitions.load_definition(tree, "nope")
    write(tree, "a", "from: b\n")
    write(tree, "b", "from: a\n")
    with pytest.raises(InputError, match=r"inherit in a loop: a -> b -> a"):
        definitions.load_definition(tree, "a")
    with pytest.raises(InputError, match=r"'../x' is not a valid image name"):
        definitions.load_definition(tree, "../x")
