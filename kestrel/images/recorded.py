"""kestrel-apt's recorded changes to an image, ROOT/etc/kestrel/images/NAME.apt, so that a rebuild keeps them.

A line a package, `install PKG` or `remove PKG`; '#' starts a comment. kestrel-apt writes it (through the plan)
after it published the new version; the admin may edit it. Every build installs the recorded packages in the
packages phase's transaction (with the definition's and the modules' lists) and then removes the removed ones.
A file beside the definition rather than in it: the definition may be the shipped one, and kestrel-apt would
otherwise rewrite the admin's YAML and its comments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kestrel.config import DEFINITIONS_DIR, check_package
from kestrel.errors import InputError
from kestrel.images.definitions import check_image_name
from kestrel.plan import FileChange, Plan
from kestrel.sysroot import Sysroot

INSTALL_COMMANDS = ("install", "reinstall")
REMOVE_COMMANDS = ("remove", "purge")


@dataclass(frozen=True)
class Recorded:
    """The packages kestrel-apt installed and removed in one image, sorted."""

    install: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def applied(self, steps: list[list[str]]) -> Recorded:
        """These changes followed by apt-get STEPS (`install PKG...`, `remove --purge PKG...`; options skipped;
        other commands, like upgrade, change no package list): the last word on a package wins."""
        install, remove = set(self.install), set(self.remove)
        for args in steps:
            words = [w for w in args if not w.startswith("-")]
            if not words or words[0] not in (*INSTALL_COMMANDS, *REMOVE_COMMANDS):
                continue
            packages = {w for w in words[1:] if _is_package(w)}
            if words[0] in INSTALL_COMMANDS:
                install, remove = install | packages, remove - packages
            else:
                install, remove = install - packages, remove | packages
        return Recorded(tuple(sorted(install)), tuple(sorted(remove)))


def describe(before: Recorded, after: Recorded) -> str:
    """What changed from BEFORE to AFTER: `install hello, remove nano` (what a rebuild now does more or less)."""
    words = [
        *(f"install {p}" for p in after.install if p not in before.install),
        *(f"remove {p}" for p in after.remove if p not in before.remove),
        *(f"no longer install {p}" for p in before.install if p not in after.install and p not in after.remove),
        *(f"no longer remove {p}" for p in before.remove if p not in after.remove and p not in after.install),
    ]
    return ", ".join(words)


def _is_package(word: str) -> bool:
    try:
        check_package(word)
    except ValueError:
        return False  # a .deb path, PKG=VERSION, PKG/RELEASE: apt takes them, a rebuild installs by name only
    return True


def recorded_path(name: str) -> str:
    return f"{DEFINITIONS_DIR}/{check_image_name(name)}.apt"


def parse_recorded(text: str, path: Path | str) -> Recorded:
    """The file's lines; bad input names the file and line."""
    install: set[str] = set()
    remove: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[0] not in ("install", "remove"):
            raise InputError(f"{path}:{number}: expected 'install PKG' or 'remove PKG', got {line.strip()!r}")
        try:
            package = check_package(words[1])
        except ValueError as e:
            raise InputError(f"{path}:{number}: {e}") from None
        (install if words[0] == "install" else remove).add(package)
        (remove if words[0] == "install" else install).discard(package)
    return Recorded(tuple(sorted(install)), tuple(sorted(remove)))


def render_recorded(name: str, recorded: Recorded) -> bytes:
    lines = [
        f"# kestrel-apt's changes to image {name}: every build of it installs and removes these again.",
        "# Edit freely (a line 'install PKG' or 'remove PKG'); delete a line to stop applying it.",
        *(f"install {p}" for p in recorded.install),
        *(f"remove {p}" for p in recorded.remove),
    ]
    return ("\n".join(lines) + "\n").encode()


def load_recorded(root: Sysroot, name: str) -> Recorded:
    path = recorded_path(name)
    text = root.read(path)
    return Recorded() if text is None else parse_recorded(text.decode("utf-8", "replace"), root.path(path))


def plan_record(root: Sysroot, name: str, recorded: Recorded) -> Plan:
    """The recorded-changes file of NAME made to say RECORDED (removed when it records nothing)."""
    path = recorded_path(name)
    new = render_recorded(name, recorded) if recorded.install or recorded.remove else None
    old = root.read(path)
    return Plan([FileChange(path, old, new)] if old != new else [])


def installed_packages(image_root: Path) -> set[str]:
    """The packages dpkg has installed in IMAGE_ROOT (its status file; no chroot needed)."""
    try:
        text = (image_root / "var/lib/dpkg/status").read_text(errors="replace")
    except FileNotFoundError:
        return set()
    found = set()
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            found.add(fields["Package"])
    return found


def explain_rows(root: Sysroot, name: str, image_root: Path | None) -> list[dict[str, str]]:
    """What `kestrel-images explain` shows of them: a row a package, with whether the current version
    (IMAGE_ROOT, None: not built) has it as recorded."""
    recorded = load_recorded(root, name)
    have = installed_packages(image_root) if image_root is not None else set()
    rows = []
    for action, packages in (("install", recorded.install), ("remove", recorded.remove)):
        for package in packages:
            done = (package in have) == (action == "install") and image_root is not None
            rows.append(
                {
                    "phase": "packages",
                    "script": f"{action} {package}",
                    "module": "",
                    "origin": "kestrel-apt",
                    "where": "recorded",
                    "status": "done" if done else "next build",
                    "path": str(root.path(recorded_path(name))),
                }
            )
    return rows
