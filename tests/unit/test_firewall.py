"""The firewall module's pure parts: the rendered table, the transaction from the live table, nft's JSON."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

from kestrel.config import load_config
from kestrel.frontend import firewall, units
from kestrel.nodes.registry import Node
from kestrel.sysroot import ServiceMode, Sysroot
from tests.treestate import dry_run

A = Node("node01", "52:54:00:aa:00:01", IPv4Address("10.10.0.21"), "default", "compute")
B = Node("node02", "52:54:00:aa:00:02", IPv4Address("10.10.0.22"), "default", "compute")


def enable(tree: Sysroot) -> None:
    path = tree.path("/etc/kestrel/kestrel.yaml")
    path.write_text(path.read_text().replace("modules: [core,", "modules: [firewall, core,"))


def test_the_table_holds_the_pairs_and_its_digest_ignores_them(tree: Sysroot) -> None:
    enable(tree)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    text = firewall.ruleset(tree, config, [A, B])
    assert "52:54:00:aa:00:01 . 10.10.0.21," in text and "52:54:00:aa:00:02 . 10.10.0.22," in text
    assert text.count("table inet kestrel") == 3  # made, deleted, defined: one transaction, nothing else named
    assert 'iifname != "eth1" accept' in text
    digest = firewall.rules_digest(tree, config)
    assert f'comment "kestrel rules {digest}"' in text
    assert f'comment "kestrel rules {digest}"' in firewall.ruleset(tree, config, [])
    other = config.model_copy(update={"boot": config.boot.model_copy(update={"http_port": 8080})})
    assert firewall.rules_digest(tree, other) != digest


def test_only_the_difference_of_the_set_is_loaded_when_the_rules_are_the_same() -> None:
    pair_a, pair_b = (A.mac, A.ip), (B.mac, B.ip)
    live = firewall.Live("d1", {pair_a: 5})
    assert firewall.transaction("WHOLE", "d1", [pair_a], live) is None
    assert firewall.transaction("WHOLE", "d1", [pair_b], live) == (
        "delete element inet kestrel nodes { 52:54:00:aa:00:01 . 10.10.0.21 }\n"
        "add element inet kestrel nodes { 52:54:00:aa:00:02 . 10.10.0.22 }\n"
    )
    assert firewall.transaction("WHOLE", "d2", [pair_a], live) == "WHOLE"  # other rules
    assert firewall.transaction("WHOLE", "d1", [pair_a], None) == "WHOLE"  # no table
    assert firewall.removal(live) == "delete table inet kestrel\n"
    assert firewall.removal(None) is None


def test_the_live_table_is_read_from_nft_json() -> None:
    text = json.dumps(
        {
            "nftables": [
                {"metainfo": {"version": "1.0.6"}},
                {"table": {"family": "inet", "name": "kestrel", "handle": 4}},
                {"counter": {"family": "inet", "name": "refused", "table": "kestrel", "packets": 7, "bytes": 84}},
                {
                    "set": {
                        "name": "nodes",
                        "elem": [
                            {
                                "elem": {
                                    "val": {"concat": ["52:54:00:AA:00:01", "10.10.0.21"]},
                                    "counter": {"packets": 3},
                                }
                            }
                        ],
                    }
                },
                {
                    "set": {
                        "name": "refused_from",
                        "elem": [
                            {
                                "elem": {
                                    "val": {"concat": ["52:54:00:aa:00:09", "10.10.0.21"]},
                                    "counter": {"packets": 7},
                                }
                            }
                        ],
                    }
                },
                {"rule": {"chain": "input", "comment": "kestrel rules abc", "expr": []}},
            ]
        }
    )
    live = firewall.parse_live(text)
    assert live == firewall.Live("abc", {(A.mac, A.ip): 3}, {("52:54:00:aa:00:09", A.ip): 7}, refused_total=7)
    assert firewall.parse_live('{"nftables": [{"metainfo": {}}]}') is None  # no table
    assert firewall.parse_live("Error: No such file or directory") is None
    no_digest = json.loads(text)
    no_digest["nftables"].pop()
    unmarked = firewall.parse_live(json.dumps(no_digest))
    assert unmarked is not None and unmarked.digest == ""  # not as Kestrel rendered it: loaded whole


def test_a_tree_rendered_elsewhere_never_touches_the_host_ruleset(tree: Sysroot) -> None:
    enable(tree)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    assert firewall.nft_argv(tree, config, "-f", "-") is None  # supervised, no namespace
    assert firewall.nft_argv(Sysroot(tree.root, ServiceMode.SYSTEMD), config, "-f", "-") is None
    assert firewall.load_step(tree, config, [A]) is None


def test_a_real_frontend_gets_a_unit_only_with_the_module(tree: Sysroot) -> None:
    systemd = Sysroot(tree.root, ServiceMode.SYSTEMD)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    assert not [d for d in units.unit_files(systemd, config) if "firewall" in d.path]
    enable(tree)
    config = load_config(tree.path("/etc/kestrel/kestrel.yaml"))
    (unit,) = [d for d in units.unit_files(systemd, config) if "firewall" in d.path]
    assert unit.path == "/etc/systemd/system/kestrel-firewall.service"
    assert f"ExecStart=/usr/sbin/nft -f {tree.root}/etc/kestrel/firewall.nft" in unit.content.decode()
    assert "PartOf=nftables.service" in unit.content.decode()


def test_dry_run_diff_of_a_registry_change_shows_the_ruleset_change(tree: Sysroot) -> None:
    enable(tree)
    lines = dry_run("nodes", tree.root, "add", "--mac", A.mac, "--ip", str(A.ip), "--dry-run", "--diff")
    assert f"Would create {tree.root}/etc/kestrel/firewall.nft" in lines
    assert "+\t\t\t52:54:00:aa:00:01 . 10.10.0.21," in lines
    text = "\n".join(dry_run("reconfigure", tree.root, "--frontend", "--dry-run", "--diff"))
    assert "+\tchain input {" in text and "+\t\tether saddr . ip saddr @nodes accept" in text


def test_without_the_module_there_is_no_table_file(tree: Sysroot) -> None:
    lines = dry_run("reconfigure", tree.root, "--frontend", "--dry-run")
    assert not [line for line in lines if "firewall" in line]
