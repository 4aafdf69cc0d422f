"""Nodes join Slurm after they boot: the frontend pushes the munge key over SSH, then munged and slurmd start.

The key never enters an image (the NFS export is world-readable to the cluster network); it reaches each
node's tmpfs root from the frontend, as the cluster users do, and goes away when the node powers off.
"""

from __future__ import annotations

import base64
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import Config
from kestrel.errors import CommandError
from kestrel.nodes import fanout, registry, ssh
from kestrel.slurm import conf
from kestrel.sysroot import Sysroot

# Seconds a booting node has to answer SSH before a background join gives up on it.
JOIN_WAIT = 900

logger = logging.getLogger(__name__)

# Runs on the node as root: the key from stdin (base64), the defaults file from $1, each written aside and
# renamed; munged and slurmd restart only when something changed or slurmd is not running: through systemd, or
# on a node without it (a container node's minimal init) as their units would start them.
_JOIN_SCRIPT = """set -e
umask 077
new=/etc/munge/.munge.key.kestrel defaults=/etc/default/.slurmd.kestrel changed=
base64 -d > "$new"
chown munge:munge "$new"
chmod 0400 "$new"
if cmp -s "$new" /etc/munge/munge.key; then rm -f "$new"; else mv -f "$new" /etc/munge/munge.key; changed=1; fi
printf '%s' "$1" > "$defaults"
chmod 0644 "$defaults"
if cmp -s "$defaults" /etc/default/slurmd; then rm -f "$defaults"
else mv -f "$defaults" /etc/default/slurmd; changed=1; fi
if [ -d /run/systemd/system ]; then
  if [ -n "$changed" ] || ! systemctl -q is-active slurmd; then
    systemctl restart munge
    systemctl restart slurmd
    echo restarted
  fi
elif [ -n "$changed" ] || ! kill -0 "$(cat /run/slurmd.pid 2>/dev/null)" 2>/dev/null; then
  # no systemd (a container node's minimal init): the daemons as their units run them
  for pidfile in /run/slurmd.pid /run/munge/munged.pid; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || continue
    tries=50
    while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
  done
  umask 022  # the key's umask would make slurmd's configless cache (/run/slurm/conf) unreadable to users
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  . /etc/default/slurmd
  /usr/sbin/slurmd -s -Z --conf "$KESTREL_SLURMD_CONF"
  echo restarted
fi
"""


@dataclass(frozen=True)
class Joined:
    node: str
    line: str | None = None  # the node's registration line, None when it failed
    why: str = ""
    restarted: bool = False


def join_nodes(
    root: Sysroot, config: Config, targets: list[ssh.Target], *, wait: float = 0.0, parallel: int = 10
) -> list[Joined]:
    """Push the key and each node's line (from its own `slurmd -C`) to TARGETS, then start munged and slurmd.

    A node that does not answer SSH is waited for up to WAIT seconds (one that is still booting)."""
    try:
        key = root.path(conf.MUNGE_KEY).read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{root.sys(conf.MUNGE_KEY)} is missing: run kestrel-reconfigure --frontend") from None
    groups = {n.name: n.group for n in registry.load_registry(root)}
    timeout = float(config.nodes.ssh_timeout)
    with ssh.root_pool(root, config.nodes.ssh_key, timeout, config.network.netns) as pool:
        return fanout.fan_out(
            targets,
            lambda t: _join(pool, t, groups.get(t.name, config.nodes.default_group), key, config, wait),
            parallel,
        )


def _join(pool: ssh.Pool, target: ssh.Target, group: str, key: bytes, config: Config, wait: float) -> Joined:
    deadline = time.monotonic() + wait
    while True:
        facts = runner.run(["slurmd", "-C"], via=pool.on(target), timeout=60, check=False)
        if facts.ok or facts.returncode is not None or time.monotonic() > deadline:
            break
        time.sleep(5)  # no connection yet: the node is still booting
    if facts.returncode is None:
        return Joined(target.name, why=facts.why())
    line = conf.node_line(conf.parse_hardware(facts.stdout), group, config.slurm.memory_headroom_mb)
    command = ["sh", "-c", shlex.quote(_JOIN_SCRIPT), "sh", shlex.quote(conf.slurmd_defaults(line))]
    done = runner.run(command, via=pool.on(target), input=base64.b64encode(key).decode(), timeout=120, check=False)
    if not done.ok:
        return Joined(target.name, why=done.why())
    return Joined(target.name, line, restarted="restarted" in done.stdout)


def join_record(node: str) -> str:
    """The supervised process of a background join (one per node; `kestrel-lab down` stops them)."""
    return f"slurm-join-{node}"


def spawn_join(root: Sysroot, config_path: Path, node: str) -> None:
    """`kestrel-nodes slurm-join NODE --wait` in the background, unless one runs already: dnsmasq runs its lease
    script serially and waits for it, while a booting node answers SSH only a minute or two later."""
    if supervisor.find(root, join_record(node)):
        return
    argv = runner.kestrel_argv("nodes", "--root", str(root.root), "--config", str(config_path))
    argv += ["slurm-join", node, "--wait", str(JOIN_WAIT)]
    supervisor.start(root, join_record(node), argv)
