"""qemu node definitions, command lines and KVM detection (the pure parts of kestrel.vm.qemu)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kestrel.cli.vm import command
from kestrel.config import Config, load_config
from kestrel.errors import CommandError, InputError
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import qemu
from tests.treestate import dry_run, kestrel


def test_mac_is_stable_and_in_qemus_block() -> None:
    assert vm_definitions.vm_mac("node01") == vm_definitions.vm_mac("node01")
    assert vm_definitions.vm_mac("node01") != vm_definitions.vm_mac("node02")
    assert vm_definitions.vm_mac("node01").startswith("52:54:00:")
    assert len(vm_definitions.vm_mac("node01")) == 17


def test_tap_names_fit_an_interface_name() -> None:
    assert vm_definitions.tap_name("node01") == "kv-node01"
    long = vm_definitions.tap_name("a-very-long-vm-name")
    assert len(long) == 15 and long.startswith("kv-a-very")
    assert long != vm_definitions.tap_name("a-very-long-vm-name2")


FLAGS = "processor\t: 0\nflags\t\t: fpu vme de pse {extra} sse2\n"


@pytest.mark.parametrize(("extra", "usable"), [("vmx", True), ("svm", True), ("hypervisor", False)])
def test_kvm_needs_vmx_or_svm(extra: str, usable: bool) -> None:
    assert qemu.kvm_usable(FLAGS.format(extra=extra)) is usable


def test_want_kvm() -> None:
    assert qemu.want_kvm("auto", True) and not qemu.want_kvm("auto", False)
    assert not qemu.want_kvm("no", True)
    with pytest.raises(CommandError, match="KVM is not usable here"):
        qemu.want_kvm("yes", False)


def test_qemu_argv_pxe_boot_on_the_tap() -> None:
    spec = vm_definitions.VmSpec(name="node01", mac="52:54:00:01:02:03", bridge="br0", mtu=1450)
    argv = qemu.qemu_argv(spec, "/x/con", kvm=False)
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-boot") + 1] == "order=n"
    assert "tap,id=n0,ifname=kv-node01,script=no,downscript=no" in argv
    assert "virtio-net-pci,netdev=n0,mac=52:54:00:01:02:03,host_mtu=1450" in argv
    assert "file,id=con0,path=/x/con,append=on" in argv
    assert not any("vhost" in a for a in argv)


def test_qemu_argv_direct_kernel_boot() -> None:
    spec = vm_definitions.VmSpec(name="n", mac="52:54:00:01:02:03", bridge="br0", kernel="/k", initrd="/i", append="ro")
    argv = qemu.qemu_argv(spec, "/c", kvm=True)
    assert argv[argv.index("-kernel") + 1] == "/k" and argv[argv.index("-append") + 1] == "ro"
    assert "-boot" not in argv and argv[argv.index("-accel") + 1] == "kvm"


def _config(tree: Sysroot, text: str = "") -> Config:
    return load_config(tree.path("/etc/kestrel/kestrel.yaml"))


def test_define_uses_config_defaults_then_keeps_the_definition(tree: Sysroot) -> None:
    config = _config(tree)
    spec = vm_definitions.define_vm(tree, config, "node01", memory=512)
    assert (spec.bridge, spec.memory, spec.mac) == ("eth1", 512, vm_definitions.vm_mac("node01"))
    again = vm_definitions.define_vm(tree, config, "node01", cpus=2)
    assert (again.memory, again.cpus) == (512, 2)
    assert [s.name for s in vm_definitions.list_vms(tree)] == ["node01"]


def test_bad_input_is_refused(tree: Sysroot) -> None:
    config = _config(tree)
    with pytest.raises(InputError, match="--mac: 'zz' is not a MAC address"):
        vm_definitions.define_vm(tree, config, "node01", mac="zz")
    with pytest.raises(InputError, match="is not a valid VM name"):
        vm_definitions.define_vm(tree, config, "../x")
    vm_definitions.define_vm(tree, config, "a", mac="52:54:00:00:00:01")
    with pytest.raises(InputError, match="already the MAC of VM a"):
        vm_definitions.define_vm(tree, config, "b", mac="52:54:00:00:00:01")
    assert [s.name for s in vm_definitions.list_vms(tree)] == ["a"]


def test_cli_list_and_unknown_vm(tree: Sysroot) -> None:
    vm_definitions.define_vm(tree, _config(tree), "node01")
    runner = CliRunner()
    out = runner.invoke(command, ["--root", str(tree.root), "list"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[1].split()[:4] == ["node01", "qemu", "stopped", vm_definitions.vm_mac("node01")]
    out = runner.invoke(command, ["--root", str(tree.root), "console", "node09"])
    assert out.exit_code != 0 and "no VM named 'node09'" in str(out.exception)


def test_cli_start_and_stop_dry_runs_write_nothing(tree: Sysroot) -> None:
    r = tree.root
    lines = dry_run("vm", r, "start", "node01", "--bridge", "lo", "--memory", "512", "--kvm", "no", "--dry-run")
    console = f"{r}/var/log/kestrel/vm-node01.console"
    mac = vm_definitions.vm_mac("node01")
    assert lines == [
        f"Would create {r}/var/lib/kestrel/vms/node01.json",
        "Would run ip tuntap add dev kv-node01 mode tap",
        "Would run ip link set kv-node01 master lo up",
        f"Would start VM node01: {qemu.runner.which('qemu-system-x86_64') or 'qemu-system-x86_64'} -name node01 "
        "-nodefaults -no-user-config -nographic -accel tcg -cpu max -m 512 -smp 1 "
        f"-chardev file,id=con0,path={console},append=on -serial chardev:con0 -monitor none "
        "-netdev tap,id=n0,ifname=kv-node01,script=no,downscript=no "
        f"-device virtio-net-pci,netdev=n0,mac={mac} -boot order=n",
    ]
    assert '+ "memory": 512,' in dry_run(
        "vm", r, "start", "node01", "--bridge", "lo", "--memory", "512", "--dry-run", "--diff"
    )
    vm_definitions.define_vm(tree, _config(tree), "node01", bridge="lo", memory=512, kvm="no")
    lines = dry_run("vm", r, "start", "node01", "--memory", "768", "--dry-run", "--diff")
    assert lines[:4] == [
        f"Would write {r}/var/lib/kestrel/vms/node01.json",
        f"--- a{r}/var/lib/kestrel/vms/node01.json",
        f"+++ b{r}/var/lib/kestrel/vms/node01.json",
        "@@ -3,7 +3,7 @@",
    ]
    assert '- "memory": 512,' in lines and '+ "memory": 768,' in lines
    assert lines[-1].startswith("Would start VM node01: ") and "-m 768 " in lines[-1]
    # stopped, no tap: nothing to stop; --remove forgets the definition
    assert dry_run("vm", r, "stop", "node01", "--dry-run") == ["Nothing to do"]
    assert dry_run("vm", r, "stop", "node01", "--remove", "--dry-run") == [
        f"Would remove {r}/var/lib/kestrel/vms/node01.json"
    ]
    missing = kestrel("vm", r, "start", "node02", "--bridge", "kt-nosuchbr", "--dry-run")
    assert (missing.returncode, missing.stderr) == (1, "kestrel-vm: VM node02: bridge kt-nosuchbr does not exist\n")
