"""The frontend's side of the slurm module: slurm.conf, the munge key, slurmctld's drop-in and its lab launcher."""

from __future__ import annotations

import pwd
import socket
from pathlib import Path

from kestrel import runner
from kestrel.config import Config
from kestrel.errors import CommandError
from kestrel.nodes.registry import Node
from kestrel.plan import Action, Desired, MakeDir, Plan, RunCommand, ServiceAction
from kestrel.slurm import conf
from kestrel.sysroot import Sysroot, encode
from kestrel.templates import render

SLURMCTLD_DROPIN = "/etc/systemd/system/slurmctld.service.d/kestrel.conf"
MUNGE_LOG = "/var/log/munge"
MUNGE_STATE = "/var/lib/munge"
MUNGE_SOCKET = "/run/munge/munge.socket.2"
# The lab's supervised process: munged and slurmctld together, sharing a private /run (munge's socket).
SERVICE = "slurmctld"


def controller_name(config: Config) -> str:
    """SlurmctldHost's name: slurmctld refuses to start on a host of another name."""
    return config.slurm.controller or socket.gethostname().split(".")[0]


def slurm_conf(root: Sysroot, config: Config, nodes: list[Node], controller: str) -> str:
    parts = conf.partitions([n.group for n in nodes], config.nodes.default_group)
    return render(
        root,
        "slurm.conf",
        config=config,
        controller=conf.controller_line(controller, config.network.ip),
        partitions=parts,
        state_dir=root.sys(conf.STATE_DIR),
        run_dir=root.sys("/run"),
        log_dir=root.sys(conf.LOG_DIR),
        node_spool=conf.NODE_SPOOL,
        node_log=conf.NODE_LOG,
        task_prolog=conf.TASK_PROLOG,
    )


def desired_files(root: Sysroot, config: Config, nodes: list[Node]) -> list[Desired]:
    """slurm.conf (a change reconfigures slurmctld), cgroup.conf with slurm.cgroups (configless nodes fetch it
    only when slurmctld starts: a restart), and, for systemd, slurmctld's drop-in."""
    text = slurm_conf(root, config, nodes, controller_name(config))
    cgroup = [Desired(conf.CGROUP_CONF, encode(render(root, "cgroup.conf")), on_change=(SERVICE, Action.RESTART))]
    return [
        *(cgroup if config.slurm.cgroups else []),
        Desired(conf.SLURM_CONF, encode(text), on_change=(SERVICE, Action.RELOAD)),
        Desired(SLURMCTLD_DROPIN, encode(render(root, "slurmctld.service.conf")), on_change=(SERVICE, Action.RESTART)),
    ]


def directories(root: Sysroot) -> list[MakeDir]:
    """slurmctld's state and log folders (owned by slurm) and munged's (owned by munge), where missing."""
    wanted = [
        (conf.STATE_DIR, "slurm", 0o755),
        (conf.LOG_DIR, "slurm", 0o755),
        (str(Path(conf.MUNGE_KEY).parent), "munge", 0o700),
        (MUNGE_LOG, "munge", 0o700),
        (MUNGE_STATE, "munge", 0o700),
    ]
    return [MakeDir(path, mode, _owner(user)) for path, user, mode in wanted if not root.path(path).is_dir()]


def key_plan(root: Sysroot) -> Plan:
    """The munge key, made once on the frontend (0400, owner munge); it never enters an image."""
    if root.path(conf.MUNGE_KEY).exists():
        return Plan()
    key = root.sys(conf.MUNGE_KEY)
    steps = [
        RunCommand(("mungekey", "--create", "--keyfile", key), f"Created the munge key {key}"),
        RunCommand(("chown", "munge:munge", key), f"Gave {key} to munge"),
        RunCommand(("chmod", "0400", key), f"Made {key} readable by munge only"),
    ]
    return Plan(list(steps), [ServiceAction("munge", Action.RESTART, "new munge key")])


def _owner(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise CommandError(f"no user {user!r} on this host: install slurmctld and munge (the slurm module)") from None
    return entry.pw_uid, entry.pw_gid


def launcher_argv(root: Sysroot) -> list[str]:
    """munged and slurmctld in one process group (the lab), meant for a private /run: munge's socket at its
    usual path there, so the slurm.conf that nodes fetch names no path of the frontend's tree.

    slurmctld looks up a job's user (getpwuid) to make its credential; the lab's cluster users live only in the
    tree's /etc/passwd and /etc/group, so slurmctld's mount namespace sees the host's files with them appended,
    kept current every few seconds (written in place: the bind mounts hold the inodes)."""
    munged = runner.which("munged") or "munged"
    slurmctld = runner.which("slurmctld") or "slurmctld"
    script = (
        "install -d -o munge -g munge -m 0755 /run/munge || exit 1; "
        'runuser -u munge -- "$1" -F --key-file="$3" --log-file="$4" --seed-file="$5" & '
        "for f in passwd group; do touch /run/host-$f /run/kestrel-$f && mount --bind /etc/$f /run/host-$f || exit 1; "
        'done; merge() { for f in passwd group; do cat /run/host-$f "$1/etc/$f" > /run/kestrel-$f.new 2>/dev/null; '
        "cmp -s /run/kestrel-$f.new /run/kestrel-$f || cat /run/kestrel-$f.new > /run/kestrel-$f; done; }; "
        'merge "$7"; for f in passwd group; do mount --bind /run/kestrel-$f /etc/$f || exit 1; done; '
        '(while sleep 3; do merge "$7"; done) & '
        "i=0; while [ ! -S /run/munge/munge.socket.2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
        'exec "$2" -D -f "$6"'
    )
    return [
        "sh",
        "-c",
        script,
        "sh",
        munged,
        slurmctld,
        root.sys(conf.MUNGE_KEY),
        root.sys(f"{MUNGE_LOG}/munged.log"),
        root.sys(f"{MUNGE_STATE}/munged.seed"),
        root.sys(conf.SLURM_CONF),
        str(root.root),
    ]
