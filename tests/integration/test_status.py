"""The status for real: a "node" namespace walks the boot stages against the frontend's dnsmasq and nginx (a
dhclient lease, curl fetching the boot script, kernel, initrd and the initramfs's root-mounted report, then an
sshd), each stage seen by `kestrel-nodes status` and on the monitor's page within 2 s; the page in headless
Chromium; a node that stops answering marked down within nodes.down_after."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import load_config
from kestrel.frontend import dnsmasq, nginx
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.net.netns import Topology
from kestrel.nodes import registry
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot
from tests.conftest import REPO, eventually, need_root
from tests.integration import sshnodes
from tests.integration.test_exec import VENV, kestrel
from tests.integration.test_frontend_services import dhcp
from tests.unit.test_frontend import publish_fake_image

FE = "10.10.0.1"
MAC = "52:54:00:10:00:01"
SCREENSHOT = REPO / "docs" / "status-page.png"


def test_a_node_walks_the_stages_and_the_page_follows(topology: Topology, tmp_path: Path) -> None:
    need_root()
    root = Sysroot(tmp_path / "tree")
    c = sshnodes.build(topology, root, count=0)
    config_path = root.path("/etc/kestrel/kestrel.yaml")
    with config_path.open("a") as f:
        f.write("nodes: {down_after: 4, ssh_timeout: 1}\n")
    publish_fake_image(root, sshnodes.IMAGE, "1")
    node = registry.Node("node01", MAC, registry.IPv4Address(f"{sshnodes.NETWORK}.101"), sshnodes.IMAGE, "compute")
    root.path(registry.REGISTRY_PATH).write_text(registry.format_registry([node]))
    host_key = (c.image / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    root.path("/etc/ssh").mkdir(parents=True, exist_ok=True)
    root.path("/etc/ssh/ssh_known_hosts").write_text(f"{sshnodes.NETWORK}.*,node* {' '.join(host_key)}\n")
    reconfigure_frontend(root, load_config(config_path), config_path)
    ns = topology.add_netns("n1")
    _, dev = topology.add_veth(c.frontend, "v1", ns, "e0", master_a=_bridge(c))
    runner.run(["ip", "-n", ns, "link", "set", dev, "address", MAC])
    try:
        for name, argv in (("dnsmasq", dnsmasq.foreground_argv(root)), ("nginx", nginx.foreground_argv(root))):
            supervisor.start(root, name, argv, netns=c.frontend)
        assert eventually(lambda: "started, version" in _text(root.path(dnsmasq.LOG_PATH)), 20)
        argv = [str(VENV / "kestrel-nodes"), "--root", str(root.root), "monitor"]
        monitor = supervisor.start(root, "monitor", argv, netns=c.frontend)
        assert supervisor.wait_for_log(monitor, "Monitoring 1 nodes", 30), _text(Path(monitor.log))
        assert eventually(lambda: _page(root) is not None, 10)
        assert _cli_stage(c, root) == "registered" and _page(root) == "registered"

        _walk(c, root, ns, dev, tmp_path)  # bench/bench_status.py measures how soon a stage shows

        rows = json.loads(_status(c, "--json"))
        assert [(r["name"], r["state"], r["stage"], r["booted_version"], r["drift"]) for r in rows] == [
            ("node01", "up", "ssh-ready", "1", False)
        ]
        assert rows[0]["uptime_seconds"] >= 0 and len(rows[0]["load"]) == 3
        table = _status(c).splitlines()
        assert table[0].split() == ["NAME", "STATE", "STAGE", "SINCE", "LAST_SEEN", "IMAGE", "VERSION", "DRIFT"] + [
            "UPTIME",
            "LOAD",
        ]
        assert table[1].split()[:3] == ["node01", "up", "ssh-ready"]
        assert nodestate.load_states(root)[MAC].is_up  # the monitor recorded the answer (hostfiles follow)

        # a new image version: the node now drifts ("reboot to update"), on the command line and on the page
        publish_fake_image(root, sshnodes.IMAGE, "2")
        assert eventually(lambda: "reboot to update" in _text(root.path("/srv/kestrel/http/status/index.html")), 2)
        assert "reboot to update" in _status(c)
        _browser_checks(ns, tmp_path)

        # the node stops answering (its link goes down, as a crashed machine): marked down within down_after (4 s),
        # in the state file and the hostfiles too
        runner.run(["ip", "-n", ns, "link", "set", dev, "down"])
        assert eventually(lambda: _page(root) == "down", 4 + 1, 0.1), _text(Path(monitor.log))
        assert not nodestate.load_states(root)[MAC].is_up
        assert "node01" not in _text(root.path("/etc/kestrel/hostfiles/openmpi"))
        assert _cli_stage(c, root) == "down"
    finally:
        for name in ("monitor", "sshd-node01", "nginx", "dnsmasq"):
            supervisor.stop(root, name, timeout=5)


def _walk(c: sshnodes.Cluster, root: Sysroot, ns: str, dev: str, tmp_path: Path) -> None:
    """Each step of a boot, then its stage on the page and on the command line."""
    http = f"http://{FE}"
    steps = [
        ("dhcp-lease", lambda: dhcp(None, ns, dev, tmp_path)),  # type: ignore[arg-type]
        ("boot-script", lambda: _curl(ns, f"{http}/boot/{sshnodes.IMAGE}.ipxe")),
        ("kernel", lambda: _curl(ns, f"{http}/images/{sshnodes.IMAGE}/1/vmlinuz")),
        ("initrd", lambda: _curl(ns, f"{http}/images/{sshnodes.IMAGE}/1/initrd.img")),
        ("root-mounted", lambda: _curl(ns, f"{http}/status/mounted")),
        ("ssh-ready", lambda: _start_sshd(c, root, ns)),
    ]
    for stage, step in steps:
        step()
        assert eventually(lambda stage=stage: _page(root) == stage, 5, 0.05), (stage, _page(root))  # type: ignore[misc]
        assert _cli_stage(c, root) == stage


def _start_sshd(c: sshnodes.Cluster, root: Sysroot, ns: str) -> None:
    sshnodes.start_sshd(root, c.image, sshnodes.SshNode("node01", ns, f"{sshnodes.NETWORK}.101"))


def _browser_checks(ns: str, tmp_path: Path) -> None:
    """The page in a real browser (Chromium, headless), from the node's side of the cluster network."""
    url = f"http://{FE}/status/"
    home = tmp_path / "chromium"
    home.mkdir()
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={home}"]
    dom = runner.run([*flags, "--dump-dom", url], via=runner.Netns(ns), timeout=120).stdout
    assert '<tr id="node-node01" data-stage="ssh-ready">' in dom, dom
    row = dom[dom.index('<tr id="node-node01"') :].split("</tr>")[0]
    assert '<span class="drift">reboot to update</span>' in row and "<td>1</td>" in row, row
    assert '<table class="nodes" data-state="up">' in dom and '<h2 id="up">Up (1)</h2>' in dom
    assert "1 nodes:" in dom and 'class="images"' in dom
    shot = tmp_path / "status.png"
    runner.run([*flags, "--window-size=1100,520", f"--screenshot={shot}", url], via=runner.Netns(ns), timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1100, 520)
    assert len(data) > 8000, "a blank page compresses to almost nothing"
    if os.environ.get("KESTREL_UPDATE_SCREENSHOT"):
        shutil.copy(shot, SCREENSHOT)


def _bridge(c: sshnodes.Cluster) -> str:
    return load_config(c.root.path("/etc/kestrel/kestrel.yaml")).network.interface


def _curl(ns: str, url: str) -> None:
    runner.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5", url], via=runner.Netns(ns))


def _status(c: sshnodes.Cluster, *args: str) -> str:
    proc = kestrel(c, "kestrel-nodes", "status", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _cli_stage(c: sshnodes.Cluster, root: Sysroot) -> str:
    return str(json.loads(_status(c, "--json"))[0]["stage"])


def _page(root: Sysroot) -> str | None:
    try:
        data = json.loads(root.path("/srv/kestrel/http/status/status.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return str(data["nodes"][0]["stage"]) if data["nodes"] else None


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
