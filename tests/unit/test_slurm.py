"""The slurm module: slurm.conf (groups -> partitions, cgroups or not), node lines from `slurmd -C` facts, the
image's drop-ins, the munge key (made once, 0400, owner munge, never in an image)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from kestrel.config import load_config
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.nodes import registry
from kestrel.slurm import conf, controller
from kestrel.sysroot import Sysroot
from tests.conftest import REPO, need_root, write_config
from tests.unit.test_frontend import REGISTRY

GOLDEN = REPO / "tests" / "golden" / "slurm"
SLURMD_C = (
    "NodeName=node01 CPUs=4 Boards=1 SocketsPerBoard=2 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=3913\n"
    "UpTime=0-00:02:11\n"
)


def check_golden(name: str, text: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from tests/golden/slurm/{name} (--update-golden rewrites it)"


def slurm_tree(tree: Sysroot, extra: str = "") -> Path:
    text = tree.path("/etc/kestrel/kestrel.yaml").read_text()
    text = text.replace("modules: [core, nfsroot, sshd, openmpi]", "modules: [core, nfsroot, sshd, openmpi, slurm]")
    path = write_config(tree, text + "slurm:\n  controller: frontend\n" + extra)
    tree.path("/etc/kestrel/nodes").write_text(REGISTRY)
    return path


@pytest.mark.parametrize(("case", "extra"), [("slurm.conf", ""), ("slurm-cgroups.conf", "  cgroups: true\n")])
def test_slurm_conf_has_a_partition_per_group(tree: Sysroot, update_golden: bool, case: str, extra: str) -> None:
    config = load_config(slurm_tree(tree, extra))
    text = controller.slurm_conf(tree, config, registry.load_registry(tree), "frontend")
    check_golden(case, text.replace(str(tree.root), "@ROOT@"), update_golden)
    assert "PartitionName=compute Nodes=group_compute Default=YES" in text
    assert "PartitionName=gpu Nodes=group_gpu Default=NO" in text
    assert "NodeName=" not in text  # dynamic nodes: a NodeName line would need a slurmctld restart to add
    if extra:
        assert "ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup,task/affinity" in text
    else:
        assert "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none" in text and "cannot use cgroups" in text


def test_the_default_group_is_a_partition_before_any_node() -> None:
    assert conf.partitions([], "compute") == [conf.Partition("compute", True)]
    assert conf.partitions(["gpu", "compute", "gpu", "big"], "compute") == [
        conf.Partition("compute", True),
        conf.Partition("big", False),
        conf.Partition("gpu", False),
    ]


def test_node_line_from_slurmd_facts_less_the_tmpfs_headroom() -> None:
    hardware = conf.parse_hardware(SLURMD_C)
    assert hardware == conf.Hardware(4, 1, 2, 2, 1, 3913)
    assert conf.node_line(hardware, "gpu", 256) == (
        "CPUs=4 Boards=1 SocketsPerBoard=2 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=3657 Feature=gpu"
    )
    # never below 1 MB (a node smaller than the headroom still joins)
    assert "RealMemory=1 " in conf.node_line(conf.Hardware(1, 1, 1, 1, 1, 200), "compute", 256)


@pytest.mark.parametrize("answer", ["", "slurmd: command not found", "NodeName=n CPUs=two Boards=1"])
def test_unknown_facts_leave_the_hardware_to_slurmd(answer: str) -> None:
    assert conf.parse_hardware(answer) is None
    assert conf.node_line(None, "compute", 256) == "Feature=compute"


def test_slurmd_defaults_keep_the_line_one_word(update_golden: bool) -> None:
    text = conf.slurmd_defaults(conf.node_line(conf.parse_hardware(SLURMD_C), "compute", 256))
    check_golden("slurmd.default", text, update_golden)
    with pytest.raises(ValueError, match="cannot hold quotes"):
        conf.slurmd_defaults('Feature=a" ExecStart=x')


def test_image_drop_ins_and_no_munge_key(tmp_path: Path, update_golden: bool) -> None:
    image = tmp_path / "image"
    (image / "etc/munge").mkdir(parents=True)
    (image / "etc/munge/munge.key").write_bytes(os.urandom(32))  # what munge's postinst leaves
    script = REPO / "phases/node/configure.d/slurm_node"
    subprocess.run([str(script)], env={"PATH": os.environ["PATH"], "KESTREL_IMAGE_ROOT": str(image)}, check=True)
    assert not (image / "etc/munge/munge.key").exists()
    dropin = (image / "etc/systemd/system/slurmd.service.d/kestrel.conf").read_text()
    check_golden("slurmd.service.d-kestrel.conf", dropin, update_golden)
    # the reset must come before the new condition: systemd otherwise ANDs Debian's slurm.conf condition in
    assert dropin.index("ConditionPathExists=\n") < dropin.index("ConditionPathExists=/etc/munge/munge.key")
    munge = (image / "etc/systemd/system/munge.service.d/kestrel.conf").read_text()
    assert "ConditionPathExists=/etc/munge/munge.key" in munge
    prolog = image / "usr/local/lib/kestrel/slurm-task-prolog"
    environment = "FI_PROVIDER=sockets\nHYDRA_HOST_FILE=/etc/kestrel/hostfiles/mpich\nOMPI_MCA_x=1\n"
    fake_etc = tmp_path / "environment"
    fake_etc.write_text(environment)
    text = prolog.read_text().replace("/etc/environment", str(fake_etc))
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout
    assert out == "export FI_PROVIDER=sockets\nexport OMPI_MCA_x=1\n"  # not the hostfile: srun brings its own nodes


def test_munge_key_is_made_once_0400_owned_by_munge(tree: Sysroot) -> None:
    need_root()
    path = slurm_tree(tree)
    config = load_config(path)
    reconfigure_frontend(tree, config, path)
    key = tree.path(conf.MUNGE_KEY)
    st = key.stat()
    assert st.st_mode & 0o777 == 0o400 and st.st_uid == pwd.getpwnam("munge").pw_uid and st.st_size >= 32
    assert tree.path("/etc/munge").stat().st_mode & 0o777 == 0o700
    assert tree.path(conf.STATE_DIR).stat().st_uid == pwd.getpwnam("slurm").pw_uid
    first = key.read_bytes()
    plan, _ = reconfigure_frontend(tree, config, path)
    assert key.read_bytes() == first and plan.is_empty
    dnsmasq = tree.path("/etc/dnsmasq.d/kestrel.conf").read_text()
    assert "srv-host=_slurmctld._tcp.cluster.local,frontend.cluster.local,6817" in dnsmasq
    assert tree.path(controller.SLURMCTLD_DROPIN).read_text().count("munge.service") == 2
    assert not tree.path(conf.CGROUP_CONF).exists()  # only with slurm.cgroups
