"""kestrel-nodes as users run it (python -m kestrel.cli.nodes): changes reach every file, bad input changes nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kestrel.sysroot import Sysroot
from tests.treestate import assert_unchanged, kestrel, tree_state

LEASES = """\
1795000000 52:54:00:bb:00:01 10.10.0.150 * *
1795000000 52:54:00:bb:00:02 10.10.0.151 client2 *
garbage line
1795000000 52:54:00:bb:00:03 10.10.0.152 * *
duid 00:01:00:01:2c:00:00:01:52:54:00:00:00:01
"""


def cli(tree: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    return kestrel("nodes", tree.root, *args)


def ok(tree: Sysroot, *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(tree, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def listing(tree: Sysroot) -> list[dict]:
    return json.loads(ok(tree, "list", "--json").stdout)


def test_add_set_remove_reach_registry_hosts_and_hostfiles(tree: Sysroot) -> None:
    said = ok(tree, "add", "--mac", "52-54-00-AA-BB-01", "--name", "node07", "--ip", "10.10.0.7").stderr
    assert said.splitlines()[-1] == "Added node07 (52:54:00:aa:bb:01, 10.10.0.7)"
    ok(tree, "add", "--mac", "5254.00aa.bb02")
    assert tree.path("/etc/kestrel/nodes").read_text().splitlines()[2:] == [
        "52:54:00:aa:bb:02,set:img-default,set:grp-compute,10.10.0.2,node01",
        "52:54:00:aa:bb:01,set:img-default,set:grp-compute,10.10.0.7,node07",
    ]
    assert "10.10.0.7\tnode07.cluster.local node07\n" in tree.path("/etc/hosts").read_text()
    assert "10.10.0.2\tnode01.cluster.local node01\n" in tree.path("/etc/kestrel/hosts").read_text()

    tree.path("/etc/kestrel/images/mpi.yaml").write_text("from: default\n")  # --image names a defined image
    ok(tree, "set", "node07", "--name", "login", "--group", "gpu", "--image", "mpi", "--ip", "10.10.0.8")
    assert [(n["name"], n["ip"], n["group"], n["image"], n["state"]) for n in listing(tree)] == [
        ("login", "10.10.0.8", "gpu", "mpi", "unknown"),
        ("node01", "10.10.0.2", "compute", "default", "unknown"),
    ]
    hosts = tree.path("/etc/hosts").read_text()
    assert "login.cluster.local" in hosts and "node07" not in hosts

    ok(tree, "set", "login,node01", "--group", "test")  # several nodes at once (a host list)
    assert [n["group"] for n in listing(tree)] == ["test", "test"]

    ok(tree, "remove", "login")
    assert [n["name"] for n in listing(tree)] == ["node01"]
    assert "login" not in tree.path("/etc/kestrel/hosts").read_text()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "--mac", "zz:54:00:aa:bb:09"], "'zz:54:00:aa:bb:09' is not a MAC address"),
        (
            ["add", "--mac", "52:54:00:aa:bb:09", "--name", "a;rm -rf /"],
            "'a;rm -rf /' is not a valid node name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
        (
            ["add", "--mac", "52:54:00:aa:bb:09", "--group", "a;rm -rf /"],
            "'a;rm -rf /' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
        (["add", "--mac", "52:54:00:aa:bb:01"], "MAC 52:54:00:aa:bb:01 is registered already, as node01"),
        (
            ["add", "--mac", "52:54:00:aa:bb:09", "--ip", "10.10.0.120"],
            "10.10.0.120 is inside the dynamic range 10.10.0.100-10.10.0.199, which only leased addresses may keep; "
            "pick one outside it",
        ),
        (
            ["set", "node01", "--name", "a;rm -rf /"],
            "'a;rm -rf /' is not a valid node name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
        (
            ["set", "node01", "--image", "../../etc"],
            "'../../etc' is not a valid image name (a-z, 0-9, '_', '.', '-', at most 63)",
        ),
        (["set", "node01"], "set: give at least one of --image, --group, --ip, --name"),
        (["remove", "a;rm -rf /"], "no node named 'a;rm -rf /' (see kestrel-nodes list)"),
        (["lease-event", "add", "a;rm -rf /", "10.10.0.150"], "'a;rm -rf /' is not a MAC address"),
        (
            ["lease-event", "add", "52:54:00:aa:bb:09", "10.10.0.150;reboot"],
            "'10.10.0.150;reboot' is not an IPv4 address",
        ),
        (
            ["--register", "--group", "a;rm -rf /", "--no-verify"],
            "'a;rm -rf /' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
        (["--register", "gpu", "--group", "compute"], "GROUP 'gpu' and --group 'compute' disagree; give one"),
        (
            ["exec", "--group", "Bad!", "--", "true"],
            "'Bad!' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)",
        ),
        (["check", "--group", "a;b"], "'a;b' is not a valid group name (RFC 1123: a-z, 0-9, inner '-', at most 63)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tree: Sysroot, args: list[str], error: str) -> None:
    ok(tree, "add", "--mac", "52:54:00:aa:bb:01")
    before = snapshot(tree.root)
    proc = cli(tree, *args)
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, f"kestrel-nodes: {error}\n", "")
    assert snapshot(tree.root) == before


def test_dry_runs_say_what_they_would_do_and_write_nothing(tree: Sysroot, tmp_path: Path) -> None:
    before = tree_state(tree.root)
    r = tree.root
    proc = ok(tree, "add", "--mac", "52:54:00:aa:bb:07", "--name", "node07", "--dry-run", "--diff")
    assert_unchanged(before, tree.root)
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("Would")] == [
        "Would add node07 (52:54:00:aa:bb:07, 10.10.0.2)",
        f"Would create {r}/etc/kestrel/nodes",
        f"Would create {r}/var/lib/kestrel/nodes.json",
        f"Would create {r}/etc/kestrel/hosts",
        f"Would create {r}/etc/hosts",
        *(f"Would create {r}/etc/kestrel/hostfiles/{f}" for f in ("openmpi", "mpich", "slurm", "hosts")),
        f"Would skip reload of dnsmasq: not running under {r}",
    ]
    assert f"+++ b{r}/etc/hosts" in lines and "+10.10.0.2\tnode07.cluster.local node07" in lines
    assert "+52:54:00:aa:bb:07,set:img-default,set:grp-compute,10.10.0.2,node07" in lines
    assert proc.stderr == ""

    ok(tree, "add", "--mac", "52:54:00:aa:bb:07", "--name", "node07")
    leases = tmp_path / "leases"
    leases.write_text(LEASES)
    before = tree_state(tree.root)
    moved = ok(tree, "set", "node07", "--ip", "10.10.0.9", "--dry-run", "--diff").stdout.splitlines()
    assert moved[:3] == ["Would change node07", f"Would write {r}/etc/kestrel/nodes", f"--- a{r}/etc/kestrel/nodes"]
    assert "-10.10.0.2\tnode07.cluster.local node07" in moved and "+10.10.0.9\tnode07.cluster.local node07" in moved
    gone = ok(tree, "remove", "node07", "--dry-run").stdout.splitlines()
    assert gone[:2] == ["Would remove node07", f"Would write {r}/etc/kestrel/nodes"]
    assert gone[-1] == f"Would skip reload of dnsmasq: not running under {r}"
    joined = ok(tree, "--register", "--no-verify", "--leases", str(leases), "--dry-run").stdout.splitlines()
    assert joined[:4] == [
        "Would register node01 (52:54:00:bb:00:01, 10.10.0.150)",
        "Would register node02 (52:54:00:bb:00:02, 10.10.0.151)",
        "Would register node03 (52:54:00:bb:00:03, 10.10.0.152)",
        f"Would write {r}/etc/kestrel/nodes",
    ]
    bad = cli(tree, "add", "--mac", "52:54:00:aa:bb:07", "--dry-run")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert_unchanged(before, tree.root)
    # --diff alone shows the diff and does it
    done = ok(tree, "set", "node07", "--group", "gpu", "--diff")
    assert "+52:54:00:aa:bb:07,set:img-default,set:grp-gpu,10.10.0.2,node07" in done.stdout.splitlines()
    assert [n["group"] for n in listing(tree)] == ["gpu"]


def test_register_from_leases_warns_and_twice_changes_nothing(tree: Sysroot, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(LEASES)
    said = ok(tree, "--register", "--no-verify", "--leases", str(leases)).stderr.splitlines()
    assert said[0] == f"Warning: {leases}:3: expected 'EXPIRY MAC IP NAME CLIENTID', got 2 fields; line skipped"
    assert said[-3:] == [
        "Registered node01 (52:54:00:bb:00:01, 10.10.0.150)",
        "Registered node02 (52:54:00:bb:00:02, 10.10.0.151)",
        "Registered node03 (52:54:00:bb:00:03, 10.10.0.152)",
    ]
    before = snapshot(tree.root)
    again = ok(tree, "--register", "--no-verify", "--leases", str(leases)).stderr
    assert again == f"Warning: {leases}:3: expected 'EXPIRY MAC IP NAME CLIENTID', got 2 fields; line skipped\n"
    assert snapshot(tree.root) == before


def test_kestrelhpc_positional_register_group_and_image(tree: Sysroot, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(LEASES)
    ok(tree, "--register", "gpu", "mpi", "--no-verify", "--leases", str(leases))
    assert {(n["group"], n["image"]) for n in listing(tree)} == {("gpu", "mpi")}


def test_verification_needs_the_frontend_key(tree: Sysroot, tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text(LEASES)
    proc = cli(tree, "--register", "--leases", str(leases))
    key = tree.path("/root/.ssh/id_ed25519")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"kestrel-nodes: {key}: no such SSH key; create it with ssh-keygen -t ed25519 -N '' -f {key}"
    )
    assert listing(tree) == []


def test_lease_events_track_state_and_hostfiles_follow(tree: Sysroot) -> None:
    ok(tree, "lease-event", "add", "52:54:00:bb:00:01", "10.10.0.150", "whatever-it-asks")
    ok(tree, "lease-event", "old", "52:54:00:bb:00:02", "10.10.0.151")
    assert [(n["name"], n["state"]) for n in listing(tree)] == [("node01", "up"), ("node02", "unknown")]
    assert ok(tree, "hostfile").stdout.splitlines()[2:] == ["node01 slots=1"]
    assert ok(tree, "hostfile", "--format", "mpich", "--all").stdout.splitlines()[2:] == ["node01:1", "node02:1"]
    written = tree.path("/etc/kestrel/hostfiles/slurm").read_text()
    assert "NodeName=node01 CPUs=1 State=UNKNOWN" in written

    ok(tree, "lease-event", "del", "52:54:00:bb:00:01", "10.10.0.150")
    assert [n["state"] for n in listing(tree)] == ["down", "unknown"]
    assert ok(tree, "hostfile").stdout.splitlines()[2:] == []
    assert "node01" not in tree.path("/etc/kestrel/hostfiles/openmpi").read_text()


def test_reconfigure_frontend_writes_the_hostfiles(tree: Sysroot) -> None:
    ok(tree, "lease-event", "add", "52:54:00:bb:00:01", "10.10.0.150")
    folder = tree.path("/etc/kestrel/hostfiles")
    expected = {p.name: p.read_text() for p in folder.iterdir()}
    assert sorted(expected) == ["hosts", "mpich", "openmpi", "slurm"]
    for p in folder.iterdir():
        p.unlink()
    proc = kestrel("reconfigure", tree.root, "--frontend")
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_text() for p in folder.iterdir()} == expected


def test_host_lists_show_list_group_and_remove_many(tree: Sysroot) -> None:
    for i in range(1, 6):
        ok(tree, "add", "--mac", f"52:54:00:aa:bb:0{i}")
    ok(tree, "set", "node04", "--group", "gpu")
    ok(tree, "set", "node05", "--group", "gpu")
    names = [n["name"] for n in json.loads(ok(tree, "list", "node[01-02]", "@gpu", "--json").stdout)]
    assert names == ["node01", "node02", "node04", "node05"]
    assert [n["name"] for n in json.loads(ok(tree, "list", "--group", "gpu", "--json").stdout)] == ["node04", "node05"]
    shown = json.loads(ok(tree, "show", "node04", "--json").stdout)
    assert {k: shown[k] for k in ("name", "group", "ip", "state", "stage")} == {
        "name": "node04",
        "group": "gpu",
        "ip": "10.10.0.5",
        "state": "unknown",
        "stage": "registered",
    }
    assert ok(tree, "show", "node04").stdout.splitlines()[0].split() == ["name", "node04"]
    said = ok(tree, "remove", "node[01-02],@gpu").stderr.splitlines()
    assert said[-4:] == ["Removed node01", "Removed node02", "Removed node04", "Removed node05"]
    assert [n["name"] for n in listing(tree)] == ["node03"]
    bad = cli(tree, "remove", "node03", "node[07-08]")
    assert (bad.returncode, bad.stderr) == (
        2,
        "kestrel-nodes: no node named 'node07', 'node08' (see kestrel-nodes list)\n",
    )
    assert [n["name"] for n in listing(tree)] == ["node03"]
