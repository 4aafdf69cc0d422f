"""Image definitions: the admin's ROOT/etc/kestrel/images/NAME.yaml over the shipped one, with `from:`."""

from __future__ import annotations

from pathlib import Path

from kestrel import names, shipped
from kestrel.config import DEFINITIONS_DIR, ImageDefinition, load_image_definition
from kestrel.errors import InputError
from kestrel.sysroot import Sysroot

SHIPPED_IMAGES = shipped.IMAGES


def definition_path(root: Sysroot, name: str) -> Path:
    """ROOT/etc/kestrel/images/NAME.yaml (the admin's) first, then the shipped images/NAME.yaml."""
    check_image_name(name)
    admin = root.path(f"{DEFINITIONS_DIR}/{name}.yaml")
    shipped = SHIPPED_IMAGES / f"{name}.yaml"
    for path in (admin, shipped):
        if path.is_file():
            return path
    raise InputError(f"no image definition '{name}': looked for {admin} and {shipped}")


def load_definition(root: Sysroot, name: str, _seen: tuple[str, ...] = ()) -> ImageDefinition:
    """The definition of NAME with `from:` resolved (the parent's keys, replaced by those NAME sets)."""
    if name in _seen:
        raise InputError(f"image definitions inherit in a loop: {' -> '.join([*_seen, name])}")
    path = definition_path(root, name)
    own = load_image_definition(path)
    if own.parent is None:
        return own
    if own.parent == name and path.parent != SHIPPED_IMAGES:
        # an admin copy may start from the shipped definition of the same name
        base = load_image_definition(SHIPPED_IMAGES / f"{name}.yaml")
    else:
        base = load_definition(root, own.parent, (*_seen, name))
    return base.model_copy(update={k: getattr(own, k) for k in own.model_fields_set if k != "parent"})


def defined_images(root: Sysroot) -> dict[str, Path]:
    """Every image with a definition (the admin's over the shipped one), by name: the ones a build can make."""
    found = {}
    for folder in (SHIPPED_IMAGES, root.path(DEFINITIONS_DIR)):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                found[names.check_name(path.stem, "image name")] = path
            except ValueError:
                continue  # not a definition (a backup like default.yaml~ does not end in .yaml; this is a stray)
    return dict(sorted(found.items()))


def check_image_name(name: str) -> str:
    return names.parse_label(name, "image name")


def image_modules(definition: ImageDefinition, config_modules: list[str]) -> list[str]:
    return list(config_modules if definition.modules is None else definition.modules)
