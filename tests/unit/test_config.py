"""kestrel.yaml: the strict loader and the exact one-line errors for bad configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.config import BootMethod, Config, NfsServer, load_config
from kestrel.errors import InputError
from kestrel.yamlfile import load_yaml
from tests.conftest import REPO

GOOD = """\
cluster: {name: lab, domain: cluster.local}
network:
  interface: eth1
  address: 10.10.0.1/24
  dhcp_range: [10.10.0.100, 10.10.0.199]
boot: {method: ipxe-http}
nfs: {server: kernel, home: /home}
nodes: {name_pattern: "node{index:02d}", default_image: default, default_group: compute, auto_register: true}
modules: [core, nfsroot, sshd, openmpi]
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "kestrel.yaml"
    path.write_text(text)
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as e:
        load(tmp_path, text)
    assert e.value.exit_code == 2
    return str(e.value).replace(str(tmp_path / "kestrel.yaml"), "F")


def test_shipped_default_loads_with_the_contract_keys() -> None:
    config = load_config(REPO / "etc-kestrel" / "kestrel.yaml")
    assert config.cluster.name == "lab" and config.cluster.domain == "cluster.local"
    assert config.network.interface == "eth1"
    assert str(config.network.address) == "10.10.0.1/24"
    assert [str(a) for a in config.network.dhcp_range] == ["10.10.0.100", "10.10.0.199"]
    assert config.boot.method is BootMethod.IPXE_HTTP
    assert config.nfs.server is NfsServer.KERNEL and config.nfs.home == "/home"
    assert config.nodes.name_pattern == "node{index:02d}"
    assert (config.nodes.default_image, config.nodes.default_group) == ("default", "compute")
    assert config.nodes.auto_register is True
    assert config.modules == ["core", "nfsroot", "sshd", "openmpi"]


def test_good_config_loads(tmp_path: Path) -> None:
    assert load(tmp_path, GOOD).network.ip.exploded == "10.10.0.1"


def test_unquoted_mac_stays_a_string() -> None:
    # PyYAML's YAML 1.1 loader reads this as the sexagesimal integer 41135085296.
    data = load_yaml(Path("x.yaml"), "mac: 52:54:00:12:34:56\nflag: no\n")
    assert data["mac"] == "52:54:00:12:34:56"
    assert data["flag"] == "no"


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("boot: {method: ipxe-http}\n", "boot: {method: ipxe-http}\nboot: {method: pxelinux}\n")
    assert error_of(tmp_path, text) == "F:7: boot: duplicate key"


BAD = [
    (
        "range outside the network",
        GOOD.replace("[10.10.0.100, 10.10.0.199]", "[10.10.0.100, 10.10.1.20]"),
        "F:5: network.dhcp_range: 10.10.1.20 is outside the cluster network 10.10.0.0/24",
    ),
    (
        "range backwards",
        GOOD.replace("[10.10.0.100, 10.10.0.199]", "[10.10.0.150, 10.10.0.120]"),
        "F:5: network.dhcp_range: start 10.10.0.150 is after end 10.10.0.120",
    ),
    (
        "range holds the frontend",
        GOOD.replace("[10.10.0.100, 10.10.0.199]", "[10.10.0.1, 10.10.0.20]"),
        "F:5: network.dhcp_range: contains the frontend address 10.10.0.1",
    ),
    (
        "bad CIDR",
        GOOD.replace("10.10.0.1/24", "10.10.0.1/33"),
        "F:4: network.address: input is not a valid IPv4 interface (got '10.10.0.1/33')",
    ),
    (
        "network address as frontend",
        GOOD.replace("10.10.0.1/24", "10.10.0.0/24"),
        "F:4: network.address: 10.10.0.0/24 is the network or broadcast address, not a host address",
    ),
    (
        "unknown key",
        GOOD.replace("nfs: {server: kernel, home: /home}", "nfs: {server: kernel, home: /home, hme: /x}"),
        "F:7: nfs.hme: unknown key",
    ),
    ("unknown section", GOOD + "nodez: {}\n", "F:10: nodez: unknown key"),
    (
        "wrong type",
        GOOD.replace("auto_register: true", "auto_register: maybe"),
        "F:8: nodes.auto_register: must be true, false or approve (got 'maybe')",
    ),
    (
        "yes is not a boolean in YAML 1.2",
        GOOD.replace("auto_register: true", "auto_register: yes"),
        "F:8: nodes.auto_register: must be true, false or approve (got 'yes')",
    ),
    (
        "bad boot method",
        GOOD.replace("method: ipxe-http", "method: floppy"),
        "F:6: boot.method: input should be 'ipxe-http' or 'pxelinux' (got 'floppy')",
    ),
    (
        "bad nfs server",
        GOOD.replace("server: kernel", "server: samba"),
        "F:7: nfs.server: input should be 'kernel' or 'ganesha' (got 'samba')",
    ),
    (
        "bad interface name",
        GOOD.replace("interface: eth1", "interface: eth1;reboot"),
        "F:3: network.interface: 'eth1;reboot' is not a network interface name (at most 15 of A-Z a-z 0-9 _ . -)",
    ),
    (
        "bad cluster name",
        GOOD.replace("name: lab", "name: 'a;rm -rf /'"),
        "F:1: cluster.name: 'a;rm -rf /' is not a valid host name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
    ),
    (
        "bad module name",
        GOOD.replace("[core, nfsroot, sshd, openmpi]", "[core, ../../etc]"),
        "F:9: modules[1]: '../../etc' is not a valid name (a-z, 0-9, '_', '.', '-', at most 63)",
    ),
    (
        "module list without core",
        GOOD.replace("[core, nfsroot, sshd, openmpi]", "[nfsroot, sshd]"),
        "F:9: modules: core is missing from ['nfsroot', 'sshd']: every node image needs it (accounts, host name, boot)",
    ),
    (
        "relative home",
        GOOD.replace("home: /home", "home: home"),
        "F:7: nfs.home: 'home' is not an absolute path of plain characters (a-z A-Z 0-9 _ . / + @ -)",
    ),
    (
        "name pattern without index",
        GOOD.replace('"node{index:02d}"', '"node"'),
        "F:8: nodes.name_pattern: 'node' must hold {index} once (width at most 2 digits), like 'node{index:02d}'",
    ),
    ("not a mapping", "- a\n- b\n", "F:1: (top): expected a mapping of keys, got a list"),
    ("broken YAML", "cluster: {name: lab\n", "F:2: (yaml): expected ',' or '}', but got '<stream end>'"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_gives_one_located_line(tmp_path: Path, case: str, text: str, message: str) -> None:
    assert error_of(tmp_path, text) == message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"kestrel.yaml: no such file$"):
        load_config(tmp_path / "kestrel.yaml")
