"""docs/config.md is the config model's reference: every key of kestrel.yaml and of image definitions is in it, with
its docstring, and it is what `python -m kestrel.configref` makes now."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from kestrel import config, configref

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key of MODEL, sub-models (plain, optional or in a list) walked."""
    found = set()
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        found.add(key)
        for sub, many in sub_models(info.annotation):
            found |= model_keys(sub, key + ("[]." if many else "."))
    return found


def sub_models(annotation: object, many: bool = False) -> list[tuple[type[BaseModel], bool]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, many)]
    inner = typing.get_origin(annotation) is list
    return [found for arg in typing.get_args(annotation) for found in sub_models(arg, many or inner)]


def test_every_key_is_documented_in_the_reference() -> None:
    text = REFERENCE.read_text()
    keys = model_keys(config.Config) | model_keys(config.ImageDefinition)
    missing = sorted(k for k in keys if f"| `{k}` |" not in text)
    assert not missing, f"docs/config.md lacks {missing}: run python -m kestrel.configref docs/config.md"
    # the keys no page documented before (issue 19)
    for key in (
        "network.leases_file",
        "network.dns_port",
        "network.netns",
        "nodes.first_index",
        "nodes.ssh_port",
        "nodes.ssh_timeout",
        "vm.kvm",
        "vm.memory",
        "switch.server",
        "servers[].name",
    ):
        assert key in keys and f"| `{key}` |" in text


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == configref.render(), "run python -m kestrel.configref docs/config.md"


def test_a_key_without_docstring_fails_the_reference() -> None:
    class Bare(config._Section):
        documented: int = 1
        """A documented key."""
        bare: int = 2

    with pytest.raises(configref.MissingDoc, match="key bare has no docstring"):
        configref._table(Bare)
