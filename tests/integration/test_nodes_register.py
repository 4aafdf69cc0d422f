"""Nodes join by booting: real dnsmasq + lease hook + registrar + dhclient, and SSH verification against a real sshd."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kestrel import runner, supervisor
from kestrel.frontend import dnsmasq, registrar
from kestrel.net.netns import Topology
from kestrel.nodes import ssh
from kestrel.nodes import state as nodestate
from kestrel.nodes.state import Facts
from kestrel.sysroot import Sysroot
from tests.integration import sshnodes
from tests.integration.sshnodes import SshNode
from tests.integration.test_frontend_services import FE_IP, Cluster, dhcp, start


def nodes_cli(c: Cluster, *args: str, netns: bool = False) -> runner.Result:
    argv = [sys.executable, "-m", "kestrel.cli.nodes", "--root", str(c.root.root), *args]
    return runner.run(argv, via=runner.in_netns(c.fe if netns else None), check=False, timeout=120)


def listing(c: Cluster) -> dict[str, dict]:
    proc = nodes_cli(c, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return {n["mac"]: n for n in json.loads(proc.stdout)}


@pytest.fixture
def cluster(tree: Sysroot, topology: Topology) -> Iterator[Cluster]:
    """A frontend namespace with the rendered config and an empty registry; nothing is registered by hand."""
    fe = topology.add_netns("fe")
    bridge = topology.add_bridge(fe, "br", f"{FE_IP}/24")
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    config_path.write_text(config_path.read_text().replace("interface: eth1", f"interface: {bridge}"))
    c = Cluster(tree, config_path, topology, fe, bridge)
    c.reconfigure()
    try:
        yield c
    finally:
        for name in [p.stem for p in tree.path("/run/kestrel").glob("*.json")]:
            supervisor.stop(tree, name, timeout=5)


def start_dnsmasq(c: Cluster) -> None:
    """dnsmasq and, beside it, the registrar that applies what its lease hook queues."""
    start(c, "registrar", dnsmasq.registrar_argv(c.root, c.config_path), ready=registrar.READY)
    start(c, "dnsmasq", dnsmasq.foreground_argv(c.root), ready="started")


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until PREDICATE holds; AssertionError after TIMEOUT."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_a_booting_node_is_registered_by_the_lease_hook(cluster: Cluster, tmp_path: Path) -> None:
    start_dnsmasq(cluster)
    mac = "52:54:00:4e:00:01"
    ns, dev = cluster.add_client("c1", mac)
    lease = dhcp(cluster, ns, dev, tmp_path)
    address = lease.split("fixed-address ")[1].split(";")[0]

    took = wait_for(lambda: mac in listing(cluster), 10)
    node = listing(cluster)[mac]
    assert (node["name"], node["ip"], node["state"]) == ("node01", address, "up"), node
    print(f"registered {took:.2f} s after the lease")  # noqa: T201
    hosts = cluster.root.path("/etc/hosts").read_text()
    assert f"{address}\tnode01.cluster.local node01\n" in hosts
    assert "node01 slots=1\n" in cluster.root.path("/etc/kestrel/hostfiles/openmpi").read_text()
    assert "NodeName=node01 CPUs=1 State=UNKNOWN" in cluster.root.path("/etc/kestrel/hostfiles/slurm").read_text()
    log = Path(supervisor.find(cluster.root, "dnsmasq").log).read_text()  # type: ignore[union-attr]
    assert log.count("read " + cluster.root.sys("/etc/kestrel/hosts")) >= 2, "dnsmasq re-read its hosts on SIGHUP"
    # ... and so it answers the new name.
    looked = runner.run(["busybox", "nslookup", "node01.cluster.local", FE_IP], via=runner.Netns(ns), check=False)
    assert address in looked.stdout, looked.stdout + looked.stderr

    # The node releases its lease (shuts down): dnsmasq says `del`, the node is down and leaves the hostfiles.
    runner.run(
        [
            "dhclient",
            "-r",
            "-sf",
            "/bin/true",
            "-cf",
            str(tmp_path / f"{ns}.conf"),
            "-lf",
            str(tmp_path / f"{ns}.lease"),
            "-pf",
            str(tmp_path / f"{ns}.pid"),
            dev,
        ],
        via=runner.Netns(ns),
        timeout=40,
    )
    wait_for(lambda: listing(cluster)[mac]["state"] == "down", 10)
    assert "node01" not in cluster.root.path("/etc/kestrel/hostfiles/openmpi").read_text()
    assert "node01" in cluster.root.path("/etc/hosts").read_text(), "a node that is down stays registered"


def test_dnsmasq_restart_replays_old_leases_without_changes(cluster: Cluster, tmp_path: Path) -> None:
    start_dnsmasq(cluster)
    mac = "52:54:00:4e:00:02"
    ns, dev = cluster.add_client("c2", mac)
    dhcp(cluster, ns, dev, tmp_path)
    wait_for(lambda: mac in listing(cluster), 10)
    time.sleep(1)
    watched = ["/etc/kestrel/nodes", "/var/lib/kestrel/nodes.json", "/etc/hosts", "/etc/kestrel/hostfiles/openmpi"]
    before = {p: cluster.root.path(p).stat().st_mtime_ns for p in watched}
    supervisor.restart(cluster.root, "dnsmasq")  # dnsmasq runs the hook with `old` for every lease it loads
    record = supervisor.find(cluster.root, "dnsmasq")
    assert record is not None and supervisor.wait_for_log(record, "started", 20)
    time.sleep(2)
    assert {p: cluster.root.path(p).stat().st_mtime_ns for p in watched} == before
    assert len(listing(cluster)) == 1


def test_a_batch_of_queued_events_reloads_dnsmasq_once(cluster: Cluster) -> None:
    """100 events queued while the registrar is down: one batch, one SIGHUP, every node in dnsmasq's DNS."""
    start(cluster, "dnsmasq", dnsmasq.foreground_argv(cluster.root), ready="started")
    hook = cluster.root.sys("/usr/local/lib/kestrel/lease-hook")
    for i in range(100):
        runner.run([hook, "add", f"52:54:00:4f:00:{i:02x}", f"10.10.0.{100 + i}"])
    log = Path(supervisor.find(cluster.root, "dnsmasq").log)  # type: ignore[union-attr]
    hosts_reads = "read " + cluster.root.sys("/etc/kestrel/hosts")
    reads = log.read_text().count(hosts_reads)
    start(cluster, "registrar", dnsmasq.registrar_argv(cluster.root, cluster.config_path), ready=registrar.READY)
    registrar_log = Path(supervisor.find(cluster.root, "registrar").log)  # type: ignore[union-attr]
    wait_for(lambda: "Applied 100 lease events" in registrar_log.read_text(), 20)
    wait_for(lambda: log.read_text().count(hosts_reads) > reads, 5)
    time.sleep(1)
    assert log.read_text().count(hosts_reads) == reads + 1
    assert registrar_log.read_text().count("Applied ") == 1
    looked = runner.run(["busybox", "nslookup", "node100.cluster.local", FE_IP], via=runner.Netns(cluster.fe))
    assert "10.10.0.199" in looked.stdout, looked.stdout


# What node a runs on, fixed by the test, not read from this machine; one CPU, as every machine has at least
# one (sshd runs pinned to it).
NODE_A_FACTS = Facts(cpus=1, memory_mb=3000, root="/srv/kestrel/images/default.versions/4")


@pytest.fixture
def ssh_cluster(cluster: Cluster) -> Iterator[tuple[Cluster, SshNode, str]]:
    """One leased machine with sshd that authorises the frontend's key, one without sshd."""
    image = sshnodes.make_image(cluster.root)
    cluster.root.path("/home").mkdir(exist_ok=True)
    ns_a, _ = cluster.add_client("a", "52:54:00:4e:00:0a", "10.10.0.150/24")
    node = sshnodes.start_sshd(cluster.root, image, SshNode("nodea", ns_a, "10.10.0.150"), NODE_A_FACTS)
    cluster.add_client("b", "52:54:00:4e:00:0b", "10.10.0.151/24")
    leases = cluster.root.path("/var/lib/kestrel/dnsmasq.leases")
    leases.write_text("1795000000 52:54:00:4e:00:0a 10.10.0.150 * *\n1795000000 52:54:00:4e:00:0b 10.10.0.151 * *\n")
    yield cluster, node, str(leases)


def skipped(lease: str, why: str) -> str:
    """The line registration says for a leased machine it does not register (a line of its own on stderr)."""
    return f"Skipped {lease}: {why}; not registered (--no-verify registers it anyway)"


def test_register_verifies_over_ssh_and_records_facts(ssh_cluster: tuple[Cluster, SshNode, str]) -> None:
    cluster, node, _ = ssh_cluster
    proc = nodes_cli(cluster, "--register", netns=True)
    assert proc.returncode == 0, proc.stderr
    assert (
        skipped("52:54:00:4e:00:0b (10.10.0.151)", "connection refused (sshd not running?)") in proc.stderr.splitlines()
    )
    found = listing(cluster)
    assert list(found) == ["52:54:00:4e:00:0a"]
    a = found["52:54:00:4e:00:0a"]
    assert (a["name"], a["ip"], a["state"], a["cpus"], a["memory_bytes"]) == (
        "node01",
        "10.10.0.150",
        "up",
        1,
        3000 * 2**20,
    )
    assert nodestate.load_states(cluster.root)["52:54:00:4e:00:0a"].root == NODE_A_FACTS.root
    hostfile = nodes_cli(cluster, "hostfile", "--format", "mpich").stdout
    assert hostfile.splitlines()[2:] == ["node01:1"]

    again = nodes_cli(cluster, "--register", "--no-verify", netns=True)
    assert again.returncode == 0, again.stderr
    b = listing(cluster)["52:54:00:4e:00:0b"]
    assert (b["name"], b["ip"], b["state"]) == ("node02", "10.10.0.151", "unknown")


def test_a_machine_that_refuses_the_key_is_not_a_node(ssh_cluster: tuple[Cluster, SshNode, str]) -> None:
    cluster, _, _ = ssh_cluster
    key = cluster.root.path("/root/.ssh/id_ed25519")
    key.unlink()
    runner.run(ssh.keygen_argv(str(key), "another"), input="y\n")
    proc = nodes_cli(cluster, "--register", netns=True)
    assert proc.returncode == 0, proc.stderr
    assert skipped("52:54:00:4e:00:0a (10.10.0.150)", "key not accepted for root") in proc.stderr.splitlines()
    assert listing(cluster) == {}


def test_a_machine_with_a_host_key_of_no_image_is_not_a_node(ssh_cluster: tuple[Cluster, SshNode, str]) -> None:
    """Answering SSH with the frontend's key is not enough: the host key must be one an image gave it."""
    cluster, node, _ = ssh_cluster
    impostor_image = cluster.root.path("/var/tmp/impostor")
    shutil.copytree(cluster.root.path(f"/srv/kestrel/images/{sshnodes.IMAGE}"), impostor_image, symlinks=True)
    host_key = impostor_image / "etc/ssh/ssh_host_ed25519_key"
    runner.run(ssh.keygen_argv(str(host_key), "impostor"), input="y\n")
    ns_c, _ = cluster.add_client("c", "52:54:00:4e:00:0c", "10.10.0.152/24")
    sshnodes.start_sshd(cluster.root, impostor_image, SshNode("nodec", ns_c, "10.10.0.152"))
    leases = cluster.root.path("/var/lib/kestrel/dnsmasq.leases")
    leases.write_text("1795000000 52:54:00:4e:00:0c 10.10.0.152 * *\n")
    proc = nodes_cli(cluster, "--register", netns=True)
    assert proc.returncode == 0, proc.stderr
    refused = [line for line in proc.stderr.splitlines() if line.startswith("Skipped 52:54:00:4e:00:0c")]
    assert len(refused) == 1 and "is not listed for 10.10.0.152 in known_hosts" in refused[0], proc.stderr
    assert listing(cluster) == {}
