"""The lab's pure parts: its config, names, refusal of /, the env lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kestrel.cli.lab import command
from kestrel.config import load_config
from kestrel.errors import InputError
from kestrel.lab import cluster as lab
from kestrel.lab import tree
from kestrel.sysroot import Sysroot

SHIPPED = (tree.SHIPPED_ETC / "kestrel.yaml").read_text()


def test_fresh_config_is_the_shipped_one_with_the_labs_choices(tmp_path: Path) -> None:
    path = tmp_path / "kestrel.yaml"
    path.write_text(tree.lab_config_text(SHIPPED, "klab-", fresh=True))
    config = load_config(path)
    assert (config.network.interface, config.network.netns) == ("klab-br0", "klab-fe")
    assert str(config.network.ipv6_prefix) == "fd10::/64"
    assert config.nfs.server == "ganesha" and config.boot.menu_timeout == 1
    assert config.boot.cmdline == "console=ttyS0,115200 quiet"
    assert config.modules == ["core", "nfsroot", "sshd", "openmpi", "mpich"]
    assert "# the frontend's interface on the cluster network" in path.read_text()


def test_a_new_prefix_changes_only_the_devices(tmp_path: Path) -> None:
    edited = tree.lab_config_text(SHIPPED, "klab-", fresh=True).replace("lease_time: 12h", "lease_time: 1h")
    again = tree.lab_config_text(edited, "kt-abc", fresh=False)
    # Only the names change (ruamel re-aligns the comment after the longer name by one column).
    assert again.split() == edited.replace("klab-br0", "kt-abcbr0").replace("klab-fe", "kt-abcfe").split()


def test_names_and_vm_names(tmp_path: Path) -> None:
    assert tree.names_for("kt-e2e") == ("kt-e2efe", "kt-e2ebr0")
    path = tmp_path / "k.yaml"
    path.write_text(tree.lab_config_text(SHIPPED, "klab-", fresh=True))
    assert lab.vm_names(load_config(path), 3) == ["node01", "node02", "node03"]
    with pytest.raises(InputError):
        tree.names_for("much-too-long")


def test_the_lab_refuses_the_hosts_root() -> None:
    with pytest.raises(InputError, match=r"^the lab needs a tree of its own, not / "):
        tree.check_lab_root(Sysroot("/"))
    out = CliRunner().invoke(command, ["--root", "/", "status"])
    assert out.exit_code != 0 and "a tree of its own" in str(out.exception)


def test_env_points_at_the_tree(tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    tree.prepare_tree(root, "kt-x")
    text = tree.env_text(root)
    assert f"export KESTREL_ROOT={tmp_path}\n" in text
    assert f"export KESTREL_CONFIG={tmp_path}/etc/kestrel/kestrel.yaml\n" in text
    assert "export KESTREL_LAB_NETNS=kt-xfe\n" in text
    status = lab.status(root)
    assert status["up"] is False and status["nodes"] == [] and status["namespace"] is None
