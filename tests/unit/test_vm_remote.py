"""qemu nodes on servers: the definition's server, the argv run there, the pid check that guards stop (the pure
parts of kestrel.vm.remote; tests/integration/test_vm_servers.py runs them over SSH)."""

from __future__ import annotations

import pytest

from kestrel.config import load_config
from kestrel.errors import InputError
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions, remote
from kestrel.vm.remote import Probe, Remote
from tests.treestate import kestrel

SERVERS = """
servers:
  - {name: sw, address: 172.31.9.1}
  - {name: rack1, address: 172.31.9.11, nodes: 2}
switch: {server: sw, bridge: kbr0}
"""


@pytest.fixture
def servers_tree(tree: Sysroot) -> Sysroot:
    config = tree.path("/etc/kestrel/kestrel.yaml")
    config.write_text(config.read_text() + SERVERS)
    return tree


def test_a_vm_on_a_server_is_on_the_switch_bridge_in_no_local_namespace(servers_tree: Sysroot) -> None:
    config = load_config(servers_tree.path("/etc/kestrel/kestrel.yaml"))
    spec = definitions.define_vm(servers_tree, config, "r1n01", server="rack1")
    assert (spec.server, spec.bridge, spec.netns) == ("rack1", "kbr0", None)
    assert definitions.load_vm(servers_tree, "r1n01") == spec


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--server", "rack9"], "--server: 'rack9' is not one of servers: (sw, rack1)"),
        (["--server", "rack1;reboot"], "--server: 'rack1;reboot' is not one of servers: (sw, rack1)"),
        (["--server", "rack1", "--netns", "ns1"], "VM r1n01: --netns is for a VM on this host, not on server rack1"),
    ],
)
def test_bad_servers_are_one_line_and_exit_2(servers_tree: Sysroot, args: list[str], error: str) -> None:
    result = kestrel("vm", servers_tree.root, "start", "r1n01", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"kestrel-vm: {error}"]
    assert definitions.load_vm(servers_tree, "r1n01") is None


def test_a_server_needs_a_switch_section(tree: Sysroot) -> None:
    config = tree.path("/etc/kestrel/kestrel.yaml")
    config.write_text(config.read_text() + "servers:\n  - {name: rack1, address: 172.31.9.11}\n")
    result = kestrel("vm", tree.root, "start", "r1n01", "--server", "rack1")
    assert result.returncode == 2 and "no switch: section" in result.stderr


def _spec(**given: object) -> definitions.VmSpec:
    fields = {"name": "r1n01", "mac": "52:54:00:01:02:03", "bridge": "kbr0", "server": "rack1", "mtu": 1450}
    return definitions.VmSpec(**(fields | given))  # type: ignore[arg-type]


def test_remote_argv_is_the_local_argv_daemonized_with_a_pid_file() -> None:
    argv = remote.remote_argv(_spec(), "/usr/bin/qemu-system-x86_64", kvm=False)
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert argv[-3:] == ["-daemonize", "-pidfile", "/run/kestrel/vm/r1n01.pid"]
    assert "file,id=con0,path=/run/kestrel/vm/r1n01.console,append=on" in argv
    assert "tap,id=n0,ifname=kv-r1n01,script=no,downscript=no" in argv
    assert argv[argv.index("-boot") + 1] == "order=n"


def test_start_steps_make_the_tap_then_start_qemu(tree: Sysroot) -> None:
    steps = Remote(tree, load_config(tree.path("/etc/kestrel/kestrel.yaml"))).start_steps(
        _spec(), Probe("/usr/bin/qemu-system-x86_64", kvm_ok=False, bridge=True, tap=False, pid=None)
    )
    argvs = [s.argv for s in steps]
    assert argvs[0] == ["mkdir", "-p", "/run/kestrel/vm"]
    assert argvs[2:5] == [
        ["ip", "tuntap", "add", "dev", "kv-r1n01", "mode", "tap"],
        ["ip", "link", "set", "kv-r1n01", "mtu", "1450"],
        ["ip", "link", "set", "kv-r1n01", "master", "kbr0", "up"],
    ]
    assert argvs[5][0] == "/usr/bin/qemu-system-x86_64" and argvs[5][-1] == "/run/kestrel/vm/r1n01.pid"


def test_start_refuses_a_server_without_qemu_or_without_its_bridge(tree: Sysroot) -> None:
    servers = Remote(tree, load_config(tree.path("/etc/kestrel/kestrel.yaml")))
    with pytest.raises(InputError, match=r"^rack1: qemu-system-x86_64 is not installed there"):
        servers.start_steps(_spec(), Probe(None, False, True, False, None))
    with pytest.raises(Exception, match=r"^rack1: no bridge kbr0 there \(kestrel-switch up makes it\)"):
        servers.start_steps(_spec(), Probe("/q", False, False, False, None))


QEMU = "/usr/bin/qemu-system-x86_64\n-name\nr1n01\n-m\n1024\n-daemonize\n-pidfile\n/run/kestrel/vm/r1n01.pid\n"


@pytest.mark.parametrize(
    ("shown", "pid"),
    [
        ("4242\n" + QEMU, 4242),
        ("", None),  # no pid file
        ("4242\n", None),  # the process is gone
        ("4242\n/bin/sleep\n-name\nr1n01\n-pidfile\n/run/kestrel/vm/r1n01.pid\n", None),  # the pid was reused
        ("4242\n" + QEMU.replace("-name\nr1n01", "-name\nr1n02"), None),  # another VM's qemu
        ("4242\n" + QEMU.replace("r1n01.pid", "other.pid"), None),
        ("not-a-pid\n" + QEMU, None),
    ],
)
def test_stop_kills_a_pid_only_when_it_is_that_vms_qemu(shown: str, pid: int | None) -> None:
    assert remote.parse_shown(shown, "r1n01") == pid


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "../etc"), ("bridge", "br0 x"), ("mac", "zz"), ("server", "a;b"), ("kernel", "/boot/vmlinuz")],
)
def test_a_definition_file_is_checked_before_its_strings_reach_a_command(field: str, value: str) -> None:
    with pytest.raises(InputError):
        remote.checked(_spec(**{field: value}))
