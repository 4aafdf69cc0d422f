"""The lab's pure parts: its config, names, refusal of /, the env lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kestrel.cli.lab import command
from kestrel.config import load_config
from kestrel.errors import InputError
from kestrel.lab import cluster as lab
from kestrel.lab import nodes as lab_nodes
from kestrel.lab import servers, tree
from kestrel.sysroot import Sysroot
from tests.treestate import dry_run, kestrel

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
    assert lab_nodes.vm_names(load_config(path), 3) == ["node01", "node02", "node03"]
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


def test_up_and_down_dry_runs_write_nothing(tmp_path: Path) -> None:
    lab_root = tmp_path / "lab"
    lines = dry_run("lab", lab_root, "up", "--dry-run", "--prefix", "kt-dry", "--nodes", "1")
    assert not lab_root.exists()
    r = lab_root
    assert lines[:6] == [
        f"Would create {r}/etc/kestrel/frontend/README.md",
        f"Would create {r}/etc/kestrel/images/default.yaml",
        f"Would create {r}/etc/kestrel/node/README.md",
        f"Would create {r}/etc/kestrel/kestrel.yaml",
        f"Would create {r}/run/kestrel/lab.json",
        "Would create network namespace kt-dryfe with bridge kt-drybr0 (10.10.0.1/24, fd10::1/64)",
    ]
    assert f"Would create {r}/etc/dnsmasq.d/kestrel.conf" in lines
    assert not any(line.startswith(("Would restart", "Would reload")) for line in lines)  # nothing runs yet
    assert [line.split(":")[0] for line in lines if line.startswith("Would start")] == [
        "Would start registrar",
        "Would start dnsmasq",
        "Would start nginx",
        "Would start nfs-ganesha",
        "Would start the Wake-on-LAN listener on kt-drybr0",
        "Would start the status monitor (kestrel-nodes monitor)",
        "Would start VM node01",
    ]
    assert lines[-9] == "Would build image default: kestrel-images build default (its --dry-run says how)"
    assert lines[-8].startswith("Would start nfs-ganesha: sh -c ")
    assert lines[-7:-2] == [
        "Would start the Wake-on-LAN listener on kt-drybr0",
        "Would start the status monitor (kestrel-nodes monitor)",
        f"Would create {r}/var/lib/kestrel/vms/node01.json",
        "Would run ip -n kt-dryfe tuntap add dev kv-node01 mode tap",
        "Would run ip -n kt-dryfe link set kv-node01 master kt-drybr0 up",
    ]
    assert lines[-2].startswith("Would start VM node01: ")
    assert f"path={r}/var/log/kestrel/vm-node01.console" in lines[-2]
    assert lines[-1] == "Would wait until node01 answer SSH (at most 900 s)"

    # the tree as up leaves it (through its plans), but the lab is down: only the state file would go
    root = Sysroot(lab_root)
    tree.prepare_tree(root, "kt-dry")
    tree.save_state(root, tree.LabState("kt-dry", ["kt-dryfe"]))
    lines = dry_run("lab", lab_root, "up", "--dry-run", "--nodes", "0")
    assert lines[0] == "Would create network namespace kt-dryfe with bridge kt-drybr0 (10.10.0.1/24, fd10::1/64)"
    assert dry_run("lab", lab_root, "down", "--dry-run") == [f"Would remove {r}/run/kestrel/lab.json"]
    another = dry_run("lab", lab_root, "up", "--dry-run", "--prefix", "kt-oth", "--nodes", "0", "--diff")
    assert another[:2] == [f"Would write {r}/etc/kestrel/kestrel.yaml", f"--- a{r}/etc/kestrel/kestrel.yaml"]
    assert "+  netns: kt-othfe" in another and f"Would write {r}/run/kestrel/lab.json" in another
    assert "Would start dnsmasq" not in kestrel("lab", lab_root, "down", "--dry-run").stdout


def test_the_lab_config_of_servers_lists_the_frontend_and_the_switch_host() -> None:
    section = servers.servers_config(servers.host_octets(2), "kt-eth", {"s1": 1, "s2": 1}, "kt-br0")
    text = tree.lab_config_text(SHIPPED, "kt-", fresh=True, servers=section)
    load_config(
        Path("/nonexistent/kestrel.yaml"), text
    )  # valid: the frontend fe and the switch host sw are servers too
    assert "mtu: 1450" in text and "server: sw" in text and "bridge: kt-br0" in text
    assert [(s["name"], s["address"], s["nodes"]) for s in section["servers"]] == [
        ("sw", "172.31.241.1", 0),
        ("fe", "172.31.241.2", 0),
        ("s1", "172.31.241.11", 1),
        ("s2", "172.31.241.12", 1),
    ]
    assert lab_nodes.server_vm_names(["s1", "s2"], 2) == [
        ("s1n01", "s1"),
        ("s1n02", "s1"),
        ("s2n01", "s2"),
        ("s2n02", "s2"),
    ]
