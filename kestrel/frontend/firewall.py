"""The firewall module: one nftables table of Kestrel's own (inet kestrel) on the cluster interface.

DHCP, TFTP and the boot files stay open to any machine; NFS, SSH, DNS and Slurm only to the registered nodes,
matched as MAC + address pairs in the set `nodes`; the rest is dropped and counted. The table is a rendered file
(FIREWALL_PATH, the template firewall.nft) loaded by `nft -f` as one transaction. A registry change loads only
the difference of the set (elements deleted and added in one transaction: the counters of the unchanged nodes
stay); a change of the rules, or a table that is missing, loads the whole file.

Where: on a real frontend (systemd) in the host's ruleset, loaded again at boot by the kestrel-firewall unit;
on a supervised tree (the lab) inside network.netns; elsewhere (a tree rendered for tests, a systemd tree under
another root) it is only written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from kestrel import names, runner
from kestrel.config import Config
from kestrel.errors import InputError
from kestrel.net import netns
from kestrel.nodes.registry import Node
from kestrel.plan import Desired, Plan, RunCommand
from kestrel.sysroot import Sysroot, encode
from kestrel.templates import render

MODULE = "firewall"
FIREWALL_PATH = "/etc/kestrel/firewall.nft"
FAMILY = "inet"
TABLE = "kestrel"
NODE_SET = "nodes"
REFUSED_SET = "refused_from"
_COMMENT = "kestrel rules "

Pair = tuple[str, IPv4Address]  # (MAC, address)


def enabled(config: Config) -> bool:
    return MODULE in config.modules


def pairs(nodes: list[Node]) -> list[Pair]:
    return sorted((n.mac, n.ip) for n in nodes)


def ruleset(root: Sysroot, config: Config, nodes: list[Node]) -> str:
    """The whole table as `nft -f` loads it (pure but for the admin's template). The comment of its last rule
    carries the digest of the rules without the elements, so a loader tells a change of the set from a change of
    the rules."""
    return render(root, "firewall.nft", config=config, nodes=nodes, comment=_COMMENT + rules_digest(root, config))


def rules_digest(root: Sysroot, config: Config) -> str:
    text = render(root, "firewall.nft", config=config, nodes=[], comment="")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def desired_files(root: Sysroot, config: Config, nodes: list[Node]) -> list[Desired]:
    return [Desired(FIREWALL_PATH, encode(ruleset(root, config, nodes)), mode=0o600)] if enabled(config) else []


# -- where the table lives and what it holds now --------------------------------------------------------------


def nft_argv(root: Sysroot, config: Config, *args: str) -> list[str] | None:
    """`nft ARGS` where this tree's firewall lives (None: nowhere, a tree rendered for tests or a lab that is down)."""
    argv = [runner.which("nft") or "nft", *args]
    if root.uses_systemd:
        return argv if str(root.root) == "/" else None  # a frontend rendered elsewhere never loads the host's
    if config.network.netns and netns.exists(config.network.netns):
        return runner.netns_argv(config.network.netns, argv)
    return None


@dataclass(frozen=True)
class Live:
    """The table as the kernel holds it: its rules' digest, the node pairs with the packets each had accepted,
    the pairs refused lately with their packets, and the refused counter."""

    digest: str
    accepted: dict[Pair, int] = field(default_factory=dict)
    refused: dict[Pair, int] = field(default_factory=dict)
    refused_total: int = 0


def parse_live(text: str) -> Live | None:
    """`nft -j list table inet kestrel` (None: no such table, or not Kestrel's)."""
    try:
        items = json.loads(text)["nftables"]
    except (ValueError, KeyError, TypeError):
        return None
    digest = None
    sets: dict[str, dict[Pair, int]] = {NODE_SET: {}, REFUSED_SET: {}}
    refused = 0
    for item in items:
        if "table" in item:
            digest = digest or ""
        elif "rule" in item and str(item["rule"].get("comment", "")).startswith(_COMMENT):
            digest = str(item["rule"]["comment"]).removeprefix(_COMMENT)
        elif "set" in item and item["set"].get("name") in sets:
            found = sets[item["set"]["name"]]
            for elem in item["set"].get("elem", []):
                pair, packets = _element(elem)
                if pair:
                    found[pair] = packets
        elif "counter" in item and item["counter"].get("name") == "refused":
            refused = int(item["counter"].get("packets", 0))
    if digest is None:
        return None
    return Live(digest, sets[NODE_SET], sets[REFUSED_SET], refused)


def _element(elem: Any) -> tuple[Pair | None, int]:
    """One element of nft's JSON: {"elem": {"val": {"concat": [MAC, IP]}, "counter": {...}}} or the bare value."""
    try:
        inner = elem.get("elem", elem) if isinstance(elem, dict) else elem
        value = inner.get("val", inner) if isinstance(inner, dict) else inner
        packets = int(inner.get("counter", {}).get("packets", 0)) if isinstance(inner, dict) else 0
        mac, ip = value["concat"]
        return (names.normalize_mac(mac), IPv4Address(ip)), packets
    except (KeyError, TypeError, ValueError, AttributeError):
        return None, 0


def counts(live: Live, mac: str, ip: IPv4Address) -> tuple[int | None, int]:
    """A node's packets: accepted as its registered pair (None: its pair is not in the set), and refused from its
    MAC or its address within the last hour (another MAC on its address, or its MAC on another address)."""
    refused = sum(n for (m, a), n in live.refused.items() if m == mac or a == ip)
    return live.accepted.get((mac, ip)), refused


def read_live(root: Sysroot, config: Config) -> Live | None:
    """The table now (None: nowhere to look, or no table)."""
    argv = nft_argv(root, config, "-j", "list", "table", FAMILY, TABLE)
    if argv is None:
        return None
    result = runner.run(argv, check=False, timeout=30)
    return parse_live(result.stdout) if result.ok else None


# -- loading ----------------------------------------------------------------------------------------------------


def transaction(whole: str, digest: str, wanted: list[Pair], live: Live | None) -> str | None:
    """What `nft -f` must load to go from LIVE to the table WHOLE (None: nothing). The same rules: only the
    elements that differ, deleted and added in one transaction; else the whole table."""
    if live is None or live.digest != digest:
        return whole
    have = set(live.accepted)
    gone = sorted(have - set(wanted))
    new = sorted(set(wanted) - have)
    lines = []
    if gone:
        lines.append(f"delete element {FAMILY} {TABLE} {NODE_SET} {{ {_elements(gone)} }}")
    if new:
        lines.append(f"add element {FAMILY} {TABLE} {NODE_SET} {{ {_elements(new)} }}")
    return "".join(line + "\n" for line in lines) or None


def removal(live: Live | None) -> str | None:
    """The table's removal (the module was turned off)."""
    return f"delete table {FAMILY} {TABLE}\n" if live is not None else None


def _elements(found: list[Pair]) -> str:
    return ", ".join(f"{mac} . {ip}" for mac, ip in found)


@dataclass(frozen=True)
class LoadRuleset(RunCommand):
    """`nft -f -` with the transaction as its input, where the firewall lives."""


def load_step(root: Sysroot, config: Config, nodes: list[Node]) -> LoadRuleset | None:
    """The step that brings the live table to the registry's NODES (None: nothing to load, or nowhere to)."""
    argv = nft_argv(root, config, "-f", "-")
    if argv is None:
        return None
    live = read_live(root, config)
    if not enabled(config):
        text = removal(live)
        return LoadRuleset(tuple(argv), f"Removed the nftables table {FAMILY} {TABLE}", encode(text)) if text else None
    wanted = pairs(nodes)
    digest = rules_digest(root, config)
    text = transaction(ruleset(root, config, nodes), digest, wanted, live)
    if text is None:
        return None
    if live is None or live.digest != digest:
        says = f"Loaded the firewall (nftables table {FAMILY} {TABLE}, {len(wanted)} nodes)"
    else:
        says = f"Updated the firewall's node set ({len(wanted)} nodes)"
    return LoadRuleset(tuple(argv), says, encode(text))


def check_plan(root: Sysroot, config: Config, plan: Plan) -> None:
    """Refuse a table nft would refuse (`nft -c`), before any file is written: the old one stays."""
    argv = nft_argv(root, config, "-c", "-f", "-")
    steps = [s for s in plan.steps if isinstance(s, LoadRuleset) and s.input]
    if argv is None or not steps:
        return
    result = runner.run(argv, input=steps[-1].input, check=False, timeout=30)
    if result.returncode is None:
        result.check()
    if not result.ok:
        why = runner.last_line(result.stderr).removeprefix(": ")
        raise InputError(f"{root.sys(FIREWALL_PATH)}: nft -c refused the new ruleset ({why}); the old one stays")
