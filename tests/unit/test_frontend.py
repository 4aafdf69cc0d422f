"""The rendered frontend: golden trees, idempotence, dry run, template overrides, dnsmasq --test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kestrel.config import load_config
from kestrel.errors import InputError
from kestrel.frontend import dnsmasq, nfs, nginx, services
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.plan import Action, ServiceAction
from kestrel.sysroot import ServiceMode, Sysroot
from tests.conftest import REPO, Recorder, said
from tests.treestate import kestrel

GOLDEN = REPO / "tests" / "golden"
REGISTRY = """\
52:54:00:aa:00:01,set:img-default,set:grp-compute,10.10.0.11,node01
52:54:00:aa:00:02,set:img-default,set:grp-compute,10.10.0.12,node02
52:54:00:aa:00:03,set:img-mpi,set:grp-gpu,10.10.0.13,node03
"""
ADMIN_HOSTS = "127.0.0.1\tlocalhost\n# the admin's own line\n192.0.2.7\tprinter\n"


def publish_fake_image(root: Sysroot, name: str, version: str, cmdline: str = "") -> None:
    """A published image as kestrel-images leaves it: a root folder, boot files, a manifest."""
    image_root = f"/srv/kestrel/images/{name}.versions/{version}"
    root.path(image_root).mkdir(parents=True)
    for web in ("http", "tftp"):
        folder = root.path(f"/srv/kestrel/{web}/images/{name}/{version}")
        folder.mkdir(parents=True)
        (folder / "vmlinuz").write_bytes(b"kernel")
        (folder / "initrd.img").write_bytes(b"initrd")
    manifest = {
        "name": name,
        "version": version,
        "root": image_root,
        "kernel": f"images/{name}/{version}/vmlinuz",
        "initrd": f"images/{name}/{version}/initrd.img",
        "cmdline": cmdline,
    }
    path = root.path(f"/var/lib/kestrel/images/{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))


def make_case(tree: Sysroot, method: str, server: str) -> Path:
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    text = config_path.read_text().replace("method: ipxe-http", f"method: {method}")
    config_path.write_text(text.replace("server: kernel", f"server: {server}"))
    tree.path("/etc/kestrel/nodes").write_text(REGISTRY)
    tree.path("/etc/hosts").write_text(ADMIN_HOSTS)
    publish_fake_image(tree, "default", "3")
    publish_fake_image(tree, "mpi", "1", cmdline="quiet")
    return config_path


def run(tree: Sysroot, config_path: Path, **kw: bool) -> list[str]:
    with said() as lines:
        reconfigure_frontend(tree, load_config(config_path), config_path, **kw)
    return lines


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def normalise(data: bytes, root: Path) -> str:
    return data.decode().replace(str(root), "@ROOT@").replace(sys.executable, "@PYTHON@")


GENERATED_BINARIES = {
    "srv/kestrel/tftp/undionly.kpxe",
    "srv/kestrel/tftp/snponly.efi",
    "srv/kestrel/tftp/pxelinux.0",
    "srv/kestrel/tftp/ldlinux.c32",
    "srv/kestrel/tftp/syslinux.efi",
    "srv/kestrel/tftp/ldlinux.e64",
}
INPUTS = (
    "etc/kestrel/kestrel.yaml",
    "etc/kestrel/nodes",
    "var/lib/kestrel/",
    "srv/kestrel/images/",
    "srv/kestrel/http/images/",
    "srv/kestrel/tftp/images/",
    "etc/kestrel/README",
    "var/lib/kestrel/lock",
    "etc/kestrel/images/",
    "etc/kestrel/node/",
    "etc/kestrel/frontend/",
)


def check_golden(tree: Sysroot, name: str, update_golden: bool) -> None:
    """The rendered files of TREE (not its inputs, not the copied loaders) are those of tests/golden/NAME."""
    golden = GOLDEN / name
    rendered = {
        path: normalise(data, tree.root)
        for path, data in snapshot(tree.root).items()
        if not path.startswith(INPUTS) and path not in GENERATED_BINARIES
    }
    if update_golden:
        shutil.rmtree(golden, ignore_errors=True)
        for path, text in rendered.items():
            (golden / path).parent.mkdir(parents=True, exist_ok=True)
            (golden / path).write_text(text)
    expected = {str(p.relative_to(golden)): p.read_text() for p in sorted(golden.rglob("*")) if p.is_file()}
    assert sorted(rendered) == sorted(expected)
    for path in expected:
        assert rendered[path] == expected[path], f"{path} differs from tests/golden/{name}/{path}"


@pytest.mark.parametrize("server", ["kernel", "ganesha"])
@pytest.mark.parametrize("method", ["ipxe-http", "pxelinux"])
def test_golden_tree(tree: Sysroot, method: str, server: str, update_golden: bool) -> None:
    config_path = make_case(tree, method, server)
    run(tree, config_path)
    check_golden(tree, f"{method}-{server}", update_golden)


def test_real_frontend_golden_tree_and_systemd_actions(
    tmp_path: Path, update_golden: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree rendered as a real frontend (what / gets): DNS forwarded out, systemd units reloaded or restarted.

    Paths in the files are under the tree (@ROOT@), as they are under / on a real frontend (@ROOT@ empty there).
    """
    shutil.copytree(REPO / "etc-kestrel", tmp_path / "etc" / "kestrel")
    tree = Sysroot(tmp_path, ServiceMode.SYSTEMD)
    systemctl = Recorder()
    monkeypatch.setattr(services, "runner", systemctl)
    config_path = make_case(tree, "ipxe-http", "ganesha")
    said = run(tree, config_path)
    check_golden(tree, "real-frontend", update_golden)
    assert "no-resolv" not in tree.path("/etc/dnsmasq.d/kestrel.conf").read_text()
    assert systemctl.ran == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", "dnsmasq"],
        ["systemctl", "reload", "nginx"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", "nfs-ganesha"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", "kestrel-monitor.service"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", "kestrel-registrar.service"],
    ]
    registrar_unit = "/etc/systemd/system/kestrel-registrar.service"
    assert said[-5:] == [
        f"Restarted dnsmasq ({dnsmasq.CONF_PATH} changed)",
        f"Reloaded nginx ({nginx.SITE_PATH} changed)",
        f"Restarted nfs-ganesha ({nfs.GANESHA_PATH} changed)",
        "Restarted kestrel-monitor.service (/etc/systemd/system/kestrel-monitor.service changed)",
        f"Restarted kestrel-registrar.service ({registrar_unit} changed)",
    ]
    # Debian's own nginx includes the site: no standalone config; the mode is recorded for every later program
    assert not tree.path(nginx.STANDALONE_PATH).exists()
    assert Sysroot(tmp_path).services is ServiceMode.SYSTEMD

    # a new node: dnsmasq re-reads its hosts (reload); a new image version: ganesha re-reads its exports (reload)
    with tree.path("/etc/kestrel/nodes").open("a") as f:
        f.write("52:54:00:aa:00:04,set:img-default,set:grp-compute,10.10.0.14,node04\n")
    publish_fake_image(tree, "mpi", "2")
    systemctl.ran.clear()
    run(tree, config_path)
    assert systemctl.ran == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "reload", "nfs-ganesha"],
        ["systemctl", "reload", "dnsmasq"],
    ]
    systemctl.ran.clear()
    assert run(tree, config_path) == [] and systemctl.ran == []


@pytest.mark.parametrize(
    ("service", "action", "commands"),
    [
        ("dnsmasq", Action.RELOAD, [["systemctl", "reload", "dnsmasq"]]),
        ("dnsmasq", Action.RESTART, [["systemctl", "daemon-reload"], ["systemctl", "restart", "dnsmasq"]]),
        ("nginx", Action.RELOAD, [["systemctl", "reload", "nginx"]]),
        ("nginx", Action.RESTART, [["systemctl", "restart", "nginx"]]),
        ("nfs-kernel", Action.RELOAD, [["exportfs", "-ra"]]),
        ("nfs-kernel", Action.RESTART, [["exportfs", "-ra"]]),  # the exports file is all there is to re-read
        ("nfs-ganesha", Action.RELOAD, [["systemctl", "daemon-reload"], ["systemctl", "reload", "nfs-ganesha"]]),
        ("nfs-ganesha", Action.RESTART, [["systemctl", "daemon-reload"], ["systemctl", "restart", "nfs-ganesha"]]),
    ],
)
def test_systemd_commands_name_the_unit_and_the_action(service: str, action: Action, commands: list[list[str]]) -> None:
    assert services.systemd_commands(ServiceAction(service, action, "test")) == commands


def test_service_mode_follows_the_root_unless_given(tmp_path: Path) -> None:
    assert Sysroot("/").services is ServiceMode.SYSTEMD and Sysroot("/").uses_systemd
    assert Sysroot(tmp_path).services is ServiceMode.SUPERVISED and not Sysroot(tmp_path).uses_systemd
    assert Sysroot(tmp_path, ServiceMode.SYSTEMD).uses_systemd
    assert not Sysroot("/", ServiceMode.SUPERVISED).uses_systemd


def test_supervised_tree_never_calls_systemctl(tree: Sysroot, monkeypatch: pytest.MonkeyPatch) -> None:
    systemctl = Recorder()
    monkeypatch.setattr(services, "runner", systemctl)
    said = run(tree, make_case(tree, "ipxe-http", "kernel"))
    assert "no-resolv\n" in tree.path("/etc/dnsmasq.d/kestrel.conf").read_text()
    assert systemctl.ran == []
    assert f"Skipped restart of dnsmasq: not running under {tree.root}" in said


def test_loaders_are_copied_from_the_packages(tree: Sysroot) -> None:
    config_path = make_case(tree, "pxelinux", "kernel")
    run(tree, config_path)
    assert tree.path("/srv/kestrel/tftp/pxelinux.0").read_bytes() == Path("/usr/lib/PXELINUX/pxelinux.0").read_bytes()
    assert tree.path("/srv/kestrel/tftp/ldlinux.c32").exists()


def test_second_run_writes_nothing_and_reloads_nothing(tree: Sysroot) -> None:
    config_path = make_case(tree, "ipxe-http", "kernel")
    first = run(tree, config_path)
    assert any(line.startswith("Created") for line in first)
    before = {p: p.stat().st_mtime_ns for p in tree.root.rglob("*") if p.is_file()}
    second = run(tree, config_path)
    assert second == []
    assert {p: p.stat().st_mtime_ns for p in tree.root.rglob("*") if p.is_file()} == before


def test_hosts_block_keeps_the_admins_lines(tree: Sysroot) -> None:
    config_path = make_case(tree, "ipxe-http", "kernel")
    run(tree, config_path)
    hosts = tree.path("/etc/hosts").read_text()
    assert hosts.startswith(ADMIN_HOSTS)
    assert hosts[len(ADMIN_HOSTS) :] == (
        "# BEGIN kestrel\n10.10.0.1\tfrontend.cluster.local frontend\n"
        "10.10.0.11\tnode01.cluster.local node01\n10.10.0.12\tnode02.cluster.local node02\n"
        "10.10.0.13\tnode03.cluster.local node03\n# END kestrel\n"
    )


def test_dry_run_and_diff_write_nothing(tree: Sysroot) -> None:
    config_path = make_case(tree, "ipxe-http", "kernel")
    before = snapshot(tree.root)
    with said() as lines:
        plan, report = reconfigure_frontend(tree, load_config(config_path), config_path, dry_run=True, diff=True)
    assert snapshot(tree.root) == before  # not even the lock file
    assert lines == []
    assert f"Would create {tree.root}/etc/dnsmasq.d/kestrel.conf" in report
    assert f"+++ b{tree.root}/etc/dnsmasq.d/kestrel.conf" in report
    assert "+dhcp-range=10.10.0.100,10.10.0.199,255.255.255.0,12h" in report
    assert f"Would skip restart of dnsmasq: not running under {tree.root}" in report


def test_config_change_restarts_only_what_it_touches(tree: Sysroot) -> None:
    config_path = make_case(tree, "ipxe-http", "kernel")
    run(tree, config_path)
    config_path.write_text(config_path.read_text().replace("lease_time: 12h", "lease_time: 1h"))
    said = run(tree, config_path)
    assert said == [
        f"Wrote {tree.root}/etc/dnsmasq.d/kestrel.conf",
        f"Skipped restart of dnsmasq: not running under {tree.root}",
    ]


def test_admin_template_overrides_the_shipped_one(tree: Sysroot) -> None:
    config_path = make_case(tree, "ipxe-http", "kernel")
    override = tree.path("/etc/kestrel/templates/boot.ipxe")
    override.parent.mkdir(parents=True)
    override.write_text("#!ipxe\n# {{ header }}\necho site-specific menu\nchain {{ http_url }}/boot/default.ipxe\n")
    run(tree, config_path)
    assert tree.path("/srv/kestrel/http/boot.ipxe").read_text() == (
        "#!ipxe\n# generated by Kestrel; override by dropping /etc/kestrel/templates/boot.ipxe\n"
        "echo site-specific menu\nchain http://10.10.0.1/boot/default.ipxe\n"
    )


def test_invalid_dnsmasq_config_is_never_installed(tree: Sysroot) -> None:
    config_path = make_case(tree, "ipxe-http", "kernel")
    run(tree, config_path)
    good = tree.path("/etc/dnsmasq.d/kestrel.conf").read_bytes()
    override = tree.path("/etc/kestrel/templates/dnsmasq.conf")
    override.parent.mkdir(parents=True)
    override.write_text("interface={{ config.network.interface }}\nno-such-option=1\n")
    with pytest.raises(
        InputError,
        match=r"dnsmasq --test refused the new config \(bad option at line 2 of the new "
        r"config\); the old one stays$",
    ):
        run(tree, config_path)
    assert tree.path("/etc/dnsmasq.d/kestrel.conf").read_bytes() == good


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return kestrel("reconfigure", root, *args)


def test_cli_bad_config_exits_2_with_one_line_and_writes_nothing(tree: Sysroot) -> None:
    config_path = tree.path("/etc/kestrel/kestrel.yaml")
    config_path.write_text(config_path.read_text().replace("10.10.0.199]", "10.10.9.199]"))
    before = snapshot(tree.root)
    proc = cli(tree.root, "--frontend")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"kestrel-reconfigure: {config_path}:12: network.dhcp_range: 10.10.9.199 is outside "
        "the cluster network 10.10.0.0/24\n"
    )
    assert snapshot(tree.root) == before


def test_cli_dry_run_diff_prints_the_plan_on_stdout(tree: Sysroot) -> None:
    proc = cli(tree.root, "--frontend", "--dry-run", "--diff")
    assert proc.returncode == 0, proc.stderr
    assert f"Would create {tree.root}/etc/exports.d/kestrel.exports" in proc.stdout
    assert not tree.path("/etc/exports.d").exists()
    proc = cli(tree.root, "--frontend")
    assert proc.returncode == 0 and f"Created {tree.root}/etc/exports.d/kestrel.exports" in proc.stderr
    proc = cli(tree.root, "--frontend", "--dry-run")
    assert (proc.returncode, proc.stdout) == (0, "Nothing to do\n")


@pytest.mark.parametrize("method", ["ipxe-http", "pxelinux"])
def test_menu_timeout_zero_boots_the_default_without_waiting(tree: Sysroot, method: str) -> None:
    config_path = make_case(tree, method, "kernel")
    config_path.write_text(config_path.read_text().replace("menu_timeout: 3", "menu_timeout: 0"))
    run(tree, config_path)
    if method == "ipxe-http":
        script = tree.path("/srv/kestrel/http/boot.ipxe").read_text()
        assert "choose" not in script and "chain --autofree http://10.10.0.1/boot/default.ipxe\n" in script
    else:
        menu = tree.path("/srv/kestrel/tftp/pxelinux.cfg/default").read_text()
        assert "PROMPT 0\n" in menu and "TIMEOUT" not in menu and "DEFAULT default\n" in menu
