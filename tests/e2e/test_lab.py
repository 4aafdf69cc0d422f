"""The README's main command, end to end: a 2-node lab boots from the network, registers, runs MPI."""

from __future__ import annotations

import json
import secrets
from typing import Any

from kestrel.frontend import keybundles
from kestrel.sysroot import Sysroot
from tests.e2e.lab import NODES, ROOT, USER, kestrel, on
from tests.integration.test_hostkeys import private_keys_under


def test_two_nodes_boot_register_and_answer(lab: str) -> None:
    """LAB is what `kestrel-lab up --nodes 2` said while the nodes booted."""
    for vm in ("node01", "node02"):
        assert f"{vm}: registered as {vm} (" in lab and f"{vm}: SSH ready" in lab, lab
    names = kestrel("kestrel-nodes", "list", "--json").stdout
    assert '"node01"' in names and '"node02"' in names
    out = kestrel("kestrel-nodes", "exec", "--", "hostname").stdout
    assert sorted(out.splitlines()) == ["node01: node01", "node02: node02"]


def test_with_the_firewall_nodes_fetched_their_stable_host_keys_and_no_export_holds_a_secret(lab: str) -> None:
    """The lab runs the firewall module: every node reached NFS and SSH through it, got its image's host keys at
    boot (no throwaway key: the fetch over HTTP, not the push), and OpenSSH pins them with strict checking."""
    tree = Sysroot(ROOT)
    booted = json.loads(tree.path("/var/lib/kestrel/images/default.json").read_text())["root"]
    # the version the nodes booted (versions kept from before the module was on still hold their keys)
    exported = [tree.path(booted), tree.path("/home"), tree.path("/etc/kestrel/hostfiles")]
    assert [p for folder in exported for p in private_keys_under(folder)] == []
    public = tree.path(f"{keybundles.KEYS_DIR}/default/ssh_host_ed25519_key.pub").read_text().split()[1]
    for node in NODES:
        out = on(node, "cat /etc/ssh/ssh_host_ed25519_key.pub; ls /run/kestrel/boot_host_ed25519_key 2>&1 || true")
        assert public in out and "No such file" in out, out
        login = kestrel("kestrel-lab", "ssh", node, "true", check=False)  # OpenSSH, StrictHostKeyChecking=yes
        assert login.returncode == 0, login.stderr
    checked = json.loads(kestrel("kestrel-nodes", "check", "--json", check=False).stdout)
    assert all(c["firewall"]["in_node_set"] and c["firewall"]["accepted_packets"] > 0 for c in checked), checked


def test_names_resolve_and_the_root_is_a_read_only_nfs_image_under_tmpfs(lab: str) -> None:
    out = on("node01", "getent hosts node02; findmnt -n -o FSTYPE /; findmnt -n -o FSTYPE,OPTIONS /run/rootovl/ro")
    lines = out.splitlines()
    assert lines[0].startswith("node01: 10.10.0.") and "node02.cluster.local" in lines[0], out
    assert lines[1] == "node01: overlay", out
    assert lines[2].split()[1] == "nfs" and " ro," in " " + lines[2].split()[2] + ",", out


def test_mpi_across_nodes_as_a_cluster_user(lab: str) -> None:
    hostfile = on("node01", "cat /etc/kestrel/hostfiles/openmpi", user=USER)
    assert "node01" in hostfile and "node02" in hostfile, hostfile
    out = on("node01", "mpirun --hostfile /etc/kestrel/hostfiles/openmpi -np 2 hostname", user=USER, timeout=180)
    assert sorted(line.split(": ", 1)[1] for line in out.splitlines()) == ["node01", "node02"], out
    out = on("node02", "mpiexec.mpich -f /etc/kestrel/hostfiles/mpich -n 2 hostname", user=USER, timeout=180)
    assert sorted(line.split(": ", 1)[1] for line in out.splitlines()) == ["node01", "node02"], out


def test_home_is_shared_and_the_root_overlay_stays_on_the_node(lab: str) -> None:
    token = secrets.token_hex(8)
    on("node01", f"echo {token} > ~/e2e-probe", user=USER)
    assert on("node02", "cat ~/e2e-probe", user=USER) == f"node02: {token}\n"
    on("node01", f"echo {token} > /kestrel-e2e-probe")
    image = Sysroot(ROOT).path("/srv/kestrel/images/default")
    assert not (image / "kestrel-e2e-probe").exists()
    assert on("node02", "test -e /kestrel-e2e-probe && echo there || echo absent") == "node02: absent\n"


def test_rebuilds_keep_the_root_that_running_nodes_booted(lab: str) -> None:
    def default() -> dict[str, Any]:
        return next(i for i in json.loads(kestrel("kestrel-images", "list", "--json").stdout) if i["name"] == "default")

    booted = default()["version"]
    kestrel("kestrel-nodes", "check")  # learns the root each node booted, from its kernel command line
    states = json.loads((ROOT / "var/lib/kestrel/nodes.json").read_text())["nodes"]
    assert [s.get("root", "").rsplit("/", 2)[-2:] for s in states.values()] == [["default.versions", booted]] * 2
    # three new versions, each from a configure change (a run that changes nothing publishes none): the booted one
    # is beyond images.keep (3), kept only because the nodes run on it
    script = ROOT / "etc/kestrel/node/configure.d/core_e2e-version"
    script.parent.mkdir(parents=True, exist_ok=True)
    try:
        for n in range(3):
            script.write_text(f'#!/bin/sh\necho {n} > "$KESTREL_IMAGE_ROOT/etc/kestrel-e2e-version"\n')
            script.chmod(0o755)
            kestrel("kestrel-reconfigure", "--image", "default", timeout=600)
    finally:
        script.unlink()
    now = default()
    assert now["version"] != booted and booted in now["versions"], now
    assert now["used_by"] == {booted: ["node01", "node02"]}, now
    exports = (ROOT / "etc/ganesha/kestrel-exports.conf").read_text()
    assert f'/default.versions/{booted}"' in exports and f'/default.versions/{now["version"]}"' in exports
    out = on("node01", "cat /etc/debian_version; ls /usr/bin | wc -l")
    assert out.splitlines()[0].startswith("node01: 12.") and int(out.splitlines()[1].split()[1]) > 100, out
