"""Container nodes on paper: their names (namespace, veth, cgroups) fit the kernel's limits and stay inside the
lab's prefix, their facts come from cgroup limits, and nspawn gets exactly the flags that matter here."""

from __future__ import annotations

from pathlib import Path

from kestrel.config import Config
from kestrel.nodes import state as nodestate
from kestrel.nodes.state import Facts
from kestrel.sysroot import Sysroot
from kestrel.vm import container, definitions


def spec(name: str) -> definitions.VmSpec:
    return definitions.VmSpec(
        name=name, mac=definitions.vm_mac(name), bridge="kt-abcbr0", netns="kt-abcfe", kind="container"
    )


def test_names_fit_and_keep_the_prefix() -> None:
    assert container.node_netns(spec("ct01")) == "kt-abcfe-ct01"
    assert container.veth_name("ct01") == "kc-ct01"
    long = container.node_netns(spec("a-very-long-node-name"))
    assert (
        len(long) <= 15 and long.startswith("kt-abcfe-") and long != container.node_netns(spec("a-very-long-node-nam"))
    )
    assert len(container.veth_name("a-very-long-node-name")) <= 15


def test_manifest_names_every_resource(tmp_path: Path) -> None:
    m = container.new_manifest(Sysroot(tmp_path), spec("ct07"), Path("/srv/kestrel/images/default.versions/1"))
    assert (m.netns, m.veth, m.bridge_netns, m.machine) == ("kt-abcfe-ct07", "kc-ct07", "kt-abcfe", "kt-abcfe-ct07")
    assert m.rundir == str(tmp_path / "run/kestrel/containers/ct07")
    assert all(Path(c).name == "kestrel-kt-abcfe-ct07" for c in m.cgroups)
    assert m.propagate == "/run/systemd/nspawn/propagate/kt-abcfe-ct07"


def test_nspawn_and_its_launcher(tmp_path: Path) -> None:
    root = Sysroot(tmp_path)
    m = container.new_manifest(root, spec("ct01"), Path("/images/v1"))
    argv = container.launch_argv(m, container.nspawn_argv(root, Config(), m, Path("/x/init")))
    assert argv[:4] == ["unshare", "-m", "--propagation", "private"]
    split = argv.index("--")
    assert argv[split - len(m.cgroups) - 2 : split] == [m.rundir, "/images/v1", *m.cgroups]
    nspawn = argv[split + 1 :]
    for flag in ("--register=no", "--keep-unit", "--capability=CAP_NET_ADMIN", "--as-pid2", "--resolv-conf=off"):
        assert flag in nspawn
    assert f"--network-namespace-path=/run/netns/{m.netns}" in nspawn
    assert "--bind-ro=/x/init:/usr/local/sbin/kestrel-node-init" in nspawn
    assert nspawn[-1] == container.INIT_IN_NODE


def test_facts_take_cgroup_limits() -> None:
    base = "cpus=2\nmemory_kb=24683584\nroot=/r\n"
    assert nodestate.parse_facts(base + "memory_limit=1073741824\ncpu_limit=100000 100000\n") == Facts(1, 1024, "/r")
    assert nodestate.parse_facts(base + "memory_limit=max\ncpu_limit=max 100000\n") == Facts(2, 24105, "/r")
    # cgroup v1 says "unlimited" with a huge number and a quota of -1
    unlimited = "memory_limit=9223372036854771712\ncpu_limit=-1 100000\n"
    assert nodestate.parse_facts(base + unlimited) == Facts(2, 24105, "/r")
    assert nodestate.parse_facts(base + "cpu_limit=150000 100000\n").cpus == 2
    assert nodestate.parse_facts(base + "cpu_limit=250000 100000\n").cpus == 2  # never more than it counts
