"""Container nodes for real: a Debian image (core + sshd, from the cached base), 8 container nodes started by
`kestrel-lab up --kind container`, each leased and named by the lab's dnsmasq and registered by its lease hook,
reached over SSH with the image's host keys; writes stay in the node; a killed nspawn and `down` leave nothing."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from kestrel import supervisor
from kestrel.lab import cluster as lab
from kestrel.net import netns
from kestrel.nodes import registry
from kestrel.sysroot import Sysroot
from kestrel.vm import container
from kestrel.vm import definitions as vm_definitions
from tests.conftest import eventually, need_root, processes_naming

BIN = Path(sys.executable).parent
CACHE = os.environ.get("KESTREL_CACHE_DIR", "/var/cache/kestrel")
IMAGE = "from: debian-bookworm\nmodules: [core, sshd]\npackages: [klibc-utils]\n"


def run(root: Sysroot, program: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KESTREL_CACHE_DIR=CACHE, KESTREL_ROOT=str(root.root))
    env["KESTREL_CONFIG"] = str(root.path("/etc/kestrel/kestrel.yaml"))
    out = subprocess.run([str(BIN / program), *args], input=stdin, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, f"{program} {' '.join(args)}: {out.stderr[-3000:]}"
    return out


def lines_by_node(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        node, _, text = line.partition(": ")
        found.setdefault(node, []).append(text)
    return found


def test_eight_container_nodes(tmp_path: Path) -> None:
    need_root()
    root = Sysroot(tmp_path / "lab")
    prefix = f"kt-{secrets.token_hex(2)[:3]}"
    try:
        _cluster(root, prefix)
    finally:
        assert lab.down(root) == []
    assert not [n for n in netns.runner.run(["ip", "netns", "list"]).stdout.split() if n.startswith(prefix)]
    assert not list(container.CGROUP_FS.glob(f"*/kestrel-{prefix}*")) + list(
        container.CGROUP_FS.glob(f"kestrel-{prefix}*")
    )
    assert container.list_manifests(root) == []
    assert not processes_naming(root.root)


def _cluster(root: Sysroot, prefix: str) -> None:
    lab.up_frontend(root, prefix)
    root.path("/etc/kestrel/images/default.yaml").write_text(IMAGE)
    run(root, "kestrel-images", "build", "default")
    image = root.path("/srv/kestrel/images/default").resolve()

    planned = run(root, "kestrel-vm", "start", "ctdry", "--kind", "container", "--dry-run").stdout.splitlines()
    assert planned[0].endswith("/var/lib/kestrel/vms/ctdry.json") and planned[-1].startswith(
        f"Would start container node ctdry on image root {image}: unshare -m (cgroups"
    )
    assert f"Would run ip netns add {prefix}fe-ctdry" in planned
    assert not root.path("/var/lib/kestrel/vms/ctdry.json").exists() and not netns.exists(f"{prefix}fe-ctdry")

    run(root, "kestrel-lab", "up", "--nodes", "8", "--kind", "container", "--timeout", "150")
    specs = vm_definitions.list_vms(root)
    assert [(s.name, s.kind) for s in specs] == [(f"ct{i:02d}", "container") for i in range(1, 9)]
    nodes = registry.load_registry(root)
    assert sorted(n.mac for n in nodes) == sorted(s.mac for s in specs)
    log = root.path("/var/log/kestrel/dnsmasq.log").read_text()
    for n in nodes:  # leased and named by dnsmasq, registered by the lease hook: no shortcut
        assert f"DHCPACK({prefix}br0) {n.ip} {n.mac} {n.name}" in log

    said = lines_by_node(run(root, "kestrel-nodes", "exec", "--", "hostname").stdout)
    assert said == {n.name: [n.name] for n in nodes}
    facts = json.loads(root.path("/var/lib/kestrel/nodes.json").read_text())["nodes"]
    # the cgroup limits (vm.memory, vm.cpus) are the facts, not the host's 2 CPUs and its RAM
    assert {(f["cpus"], f["memory_mb"], f["root"]) for f in facts.values()} == {(1, 1024, str(image))}
    status = json.loads(run(root, "kestrel-lab", "status", "--json").stdout)
    assert {(n["kind"], n["vm"]) for n in status["nodes"]} == {("container", s.name) for s in specs}

    # a write to / stays in its node: not on another node, not in the image
    first, second = nodes[0].name, nodes[1].name
    run(root, "kestrel-nodes", "exec", first, "--", "echo mine > /etc/kestrel-written")
    assert run(root, "kestrel-nodes", "exec", first, "--", "cat /etc/kestrel-written").stdout == f"{first}: mine\n"
    other = run(root, "kestrel-nodes", "exec", second, "--", "test -e /etc/kestrel-written && echo there || echo no")
    assert other.stdout == f"{second}: no\n"
    assert not (image / "etc/kestrel-written").exists()

    # nspawn killed with SIGKILL: its node's processes live on; stop still removes everything it made
    ct01 = next(s for s in specs if s.name == "ct01")
    manifest = container.load_manifest(root, "ct01")
    record = supervisor.find(root, "vm-ct01")
    assert manifest and record
    os.kill(record.pid, signal.SIGKILL)
    assert eventually(lambda: supervisor.find(root, "vm-ct01") is None, 10)
    assert netns.pids(manifest.netns), "the node's sshd outlives nspawn"
    run(root, "kestrel-vm", "stop", "ct01")
    assert not netns.exists(manifest.netns) and container.load_manifest(root, "ct01") is None
    assert not [p for p in map(Path, manifest.cgroups) if p.exists()]
    assert container.veth_name("ct01") not in netns.runner.run(["ip", "-n", f"{prefix}fe", "link"]).stdout

    # an image rollout: a restarted node (woken by its magic packet) runs the new version, the old one is unchanged
    run(root, "kestrel-images", "shell", "default", stdin="echo v2 > /etc/kestrel-version\n")
    new_image = root.path("/srv/kestrel/images/default").resolve()
    assert new_image != image
    node = next(n for n in nodes if n.mac == ct01.mac)
    run(root, "kestrel-nodes", "wake", node.name)
    assert eventually(lambda: _answers(root, node.name) == f"{node.name}: v2\n", 60), _answers(root, node.name)
    assert not (image / "etc/kestrel-version").exists()


def _answers(root: Sysroot, node: str) -> str:
    env = dict(os.environ, KESTREL_ROOT=str(root.root), KESTREL_CONFIG=str(root.path("/etc/kestrel/kestrel.yaml")))
    out = subprocess.run(
        [str(BIN / "kestrel-nodes"), "exec", node, "--", "cat /etc/kestrel-version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return out.stdout
