"""The multi-server switch: the servers:/switch: config and the pure plan of what each host gets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kestrel.config import Config, load_config
from kestrel.errors import InputError
from kestrel.net import switch
from kestrel.sysroot import Sysroot
from tests.treestate import kestrel

SERVERS = """servers:
  - {name: sw, address: 172.16.0.1, memory: 4096}
  - {name: srv1, address: 172.16.0.11, nodes: 2, memory: 8192}
  - {name: srv2, address: 172.16.0.12, nodes: 2, memory: 8192, underlay_interface: ens3}
switch:
  server: sw
"""


def config(text: str = SERVERS) -> Config:
    return Config.model_validate(YAML(typ="safe").load(text))


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "kestrel.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "servers:\n  - {name: a, address: 10.0.0.1}\n  - {name: a, address: 10.0.0.2}\n",
            "4: servers[1].name: 'a' is also servers[0]'s name",
        ),
        (
            "servers:\n  - {name: a, address: 10.0.0.1}\n  - name: b\n    address: 10.0.0.1\n",
            "5: servers[1].address: '10.0.0.1' is also servers[0]'s address",
        ),
        (
            "servers:\n  - {name: a, address: 10.0.0.1}\nswitch:\n  server: b\n",
            "5: switch.server: 'b' is not one of servers: (a)",
        ),
        (
            "vm: {memory: 2048}\nservers:\n  - name: a\n    address: 10.0.0.1\n    memory: 4096\n    nodes: 2\n",
            "7: servers[0].nodes: 2 nodes of vm.memory 2048 MiB need 4608 MiB (with 512 for the server), it has 4096",
        ),
        (
            "servers:\n  - {name: a, address: 10.0.0.1, key: /k, password: x}\n",
            "3: servers[0].password: give key or password, not both",
        ),
        (
            "servers:\n  - {name: a, address: 10.0.0.1}\nswitch: {server: a, mtu: big}\n",
            "4: switch.mtu: must be auto or a number from 576 to 9000 (got 'big')",
        ),
        ("servers:\n  - {name: averylongname, address: 10.0.0.1}\n", "3: servers[0].name:"),
    ],
)
def test_bad_servers_are_located(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(InputError) as e:
        load(tmp_path, "modules: [core]\n" + text)
    assert str(e.value).startswith(f"{tmp_path / 'kestrel.yaml'}:{error}")


def test_cli_bad_servers_exit_2_with_one_line(tree: Sysroot) -> None:
    path = tree.path("/etc/kestrel/kestrel.yaml")
    path.write_text(path.read_text() + "servers:\n  - {name: a, address: 10.0.0.1}\nswitch: {server: z}\n")
    proc = kestrel("switch", tree.root, "up", "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "switch.server: 'z' is not one of servers: (a)" in proc.stderr


def test_hub_gets_one_vxlan_per_server_with_distinct_vnis() -> None:
    hub, srv1, srv2 = switch.plan_hosts(config())
    assert [(d.name, d.kind, d.vni, str(d.remote or ""), d.master) for d in hub.devices] == [
        ("kvx-hub", "bridge", None, "", None),
        ("kvxsrv1", "vxlan", 100, "172.16.0.11", "kvx-hub"),
        ("kvxsrv2", "vxlan", 101, "172.16.0.12", "kvx-hub"),
    ]
    assert [str(a) for a in hub.peers] == ["172.16.0.11", "172.16.0.12"]
    assert [(d.name, d.vni, str(d.remote or ""), d.underlay) for d in srv2.devices] == [
        ("kbr0", None, "", None),
        ("kvx-up", 101, "172.16.0.1", "ens3"),
    ]
    assert [str(a) for a in srv1.peers] == ["172.16.0.1"]


def test_switch_host_with_nodes_joins_its_bridge_by_veth() -> None:
    (hub,) = switch.plan_hosts(
        config("servers:\n  - {name: one, address: 10.0.0.1, nodes: 2}\nswitch: {server: one}\n")
    )
    assert [(d.name, d.kind) for d in hub.devices] == [("kvx-hub", "bridge"), ("kbr0", "bridge"), ("kvx-lh", "veth")]
    assert switch.plan_up(hub, 1450, {"lo": {}})[-4:] == [
        ["ip", "link", "set", "kvx-lh", "master", "kvx-hub"],
        ["ip", "link", "set", "kvx-lh", "mtu", "1450", "up"],
        ["ip", "link", "set", "kvx-ls", "master", "kbr0"],
        ["ip", "link", "set", "kvx-ls", "mtu", "1450", "up"],
    ]


def test_mtu_is_the_smallest_underlay_minus_the_overhead() -> None:
    c = config()
    assert c.switch is not None
    v4 = [c.servers[0].address]
    assert switch.overlay_mtu(c.switch, {"a": 1500, "b": 9000}, v4) == 1450
    v6 = config("servers:\n  - {name: a, address: 'fd00::1'}\nswitch: {server: a}\n")
    assert switch.overlay_mtu(c.switch, {"a": 1500}, [v6.servers[0].address]) == 1430
    fixed = config(SERVERS.replace("server: sw", "server: sw\n  mtu: 1400"))
    assert fixed.switch is not None
    assert switch.overlay_mtu(fixed.switch, {"a": 1500}, v4) == 1400
    with pytest.raises(InputError, match="switch.mtu: 1400 does not fit: b's underlay MTU 1420 leaves 1370"):
        switch.overlay_mtu(fixed.switch, {"a": 1500, "b": 1420}, v4)


def test_up_creates_what_is_missing_and_nothing_when_all_is_there() -> None:
    srv1 = switch.plan_hosts(config())[1]
    first = switch.plan_up(srv1, 1450, {"eth0": {"mtu": 1500}})
    assert [" ".join(a) for a in first] == [
        "ip link add kbr0 type bridge stp_state 0 forward_delay 0",
        "ip link set kbr0 mtu 1450 up",
        "ip link add kvx-up type vxlan id 100 remote 172.16.0.1 local 172.16.0.11 dstport 4789 dev eth0",
        "ip link set kvx-up master kbr0",
        "ip link set kvx-up mtu 1450 up",
    ]
    done = {"kbr0": {"mtu": 1450, "flags": ["UP"]}, "kvx-up": {"mtu": 1450, "flags": ["UP"], "master": "kbr0"}}
    assert switch.plan_up(srv1, 1450, done) == []
    assert switch.plan_up(srv1, 1400, done) == [
        ["ip", "link", "set", "kbr0", "mtu", "1400", "up"],
        ["ip", "link", "set", "kvx-up", "mtu", "1400", "up"],
    ]
    assert switch.created(srv1, {"kbr0": {}}) == ["kvx-up"]  # an admin's bridge is not ours to remove


def test_down_removes_only_what_the_manifest_lists() -> None:
    manifest = switch.Manifest(["kbr0", "kvx-up"], switch.NFT_TABLE, "", 1450)
    assert switch.plan_down(manifest, {"kbr0": {}, "kvx-up": {}, "eth0": {}}) == [
        ["ip", "link", "del", "kvx-up"],
        ["ip", "link", "del", "kbr0"],
    ]
    assert switch.plan_down(switch.Manifest(["kvx-up"]), {"kbr0": {}}) == []
    assert switch.Manifest.parse(manifest.to_json()) == manifest
    assert switch.Manifest.parse("") == switch.Manifest()
    with pytest.raises(InputError, match="not a switch manifest"):
        switch.Manifest.parse("{")


def test_nft_accepts_the_vxlan_port_from_peers_only() -> None:
    hub = switch.plan_hosts(config())[0]
    rules = switch.nft_ruleset(hub)
    assert "elements = { 172.16.0.11, 172.16.0.12 }" in rules
    assert "udp dport 4789 ip saddr @peers4 accept" in rules
    assert 'udp dport 4789 counter name "dropped" drop' in rules
    assert "peers6" not in rules
    assert switch.nft_up_input(rules).startswith("table inet kestrel_switch\ndelete table inet kestrel_switch\n")


def test_batch_quotes_each_word() -> None:
    assert switch.batch([["ip", "link", "del", "a b"], ["ip", "link", "set", "x", "up"]]) == (
        "link del 'a b'\nlink set x up\n"
    )


def test_steps_run_in_one_shell_with_their_inputs_and_statuses() -> None:
    steps = [
        switch.Step(["printf", "%s|", "a b", "$HOME", "'q'"]),
        switch.Step(["cat"], "line 1\nline 2"),
        switch.Step(["sh", "-c", "exit 3"]),
        switch.Step(["echo", "after"]),
    ]
    ran = subprocess.run(["sh", "-c", switch.steps_script(steps, False)], capture_output=True, text=True)
    assert switch.parse_steps(ran.stdout) == [(0, "a b|$HOME|'q'|"), (0, "line 1\nline 2\n"), (3, ""), (0, "after\n")]
    stopped = subprocess.run(["sh", "-c", switch.steps_script(steps, True)], capture_output=True, text=True)
    assert stopped.returncode == 3 and [rc for rc, _ in switch.parse_steps(stopped.stdout)] == [0, 0, 3]
