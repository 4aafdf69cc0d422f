"""Service actions, by the tree's ServiceMode: systemd units on a real frontend, else Kestrel-supervised processes."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

from kestrel import runner, supervisor
from kestrel.gateway import engine
from kestrel.plan import Action, Plan, ServiceAction, apply_changes, touches_service
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)

# service -> (systemd unit, how to reload it on the host)
_HOST = {
    "dnsmasq": ("dnsmasq", ["systemctl", "reload", "dnsmasq"]),
    "nginx": ("nginx", ["systemctl", "reload", "nginx"]),
    "nfs-kernel": ("nfs-kernel-server", ["exportfs", "-ra"]),
    "nfs-ganesha": ("nfs-ganesha", ["systemctl", "reload", "nfs-ganesha"]),
    "ssh": ("ssh", ["systemctl", "reload", "ssh"]),
    "haproxy": ("haproxy", ["systemctl", "reload", "haproxy"]),
}
# Services whose unit has a Kestrel drop-in: systemd reads it again before any action.
_DROPIN = {"nfs-ganesha", "haproxy"}
# A failed reload of these is only a warning: the file is written, the admin reloads by hand.
_WARN_ONLY = {"ssh"}
# Supervised services that re-read their files on SIGHUP; HAProxy reloads on SIGUSR2 (gateway.engine); the
# others are restarted.
_SIGHUP = {"dnsmasq", "nginx", "nfs-ganesha"}


def apply(root: Sysroot, plan: Plan) -> None:
    """The one way a plan is carried out: its steps, then its service actions."""
    apply_changes(root, plan)
    perform(root, plan.actions)


def perform(root: Sysroot, actions: Iterable[ServiceAction]) -> None:
    for a in actions:
        if not touches_service(root, a):
            logger.info(f"Skipped {a.action} of {a.service}: not running under {root.root}")
        elif root.uses_systemd:
            _perform_on_host(a)
        else:
            _perform_supervised(root, a)


def systemd_commands(a: ServiceAction) -> list[list[str]]:
    """The commands that carry out A on a real frontend (systemctl reload or restart of its unit)."""
    unit, reload_argv = _HOST[a.service]
    argv = reload_argv if a.action is Action.RELOAD or a.service == "nfs-kernel" else ["systemctl", "restart", unit]
    if a.service in _DROPIN:
        return [["systemctl", "daemon-reload"], argv]  # Kestrel's drop-in may have changed
    return [argv]


def _perform_on_host(a: ServiceAction) -> None:
    master = _haproxy_master() if a.service == "haproxy" and a.action is Action.RELOAD else None
    before = engine.workers(master) if master else set()
    for argv in systemd_commands(a):
        result = runner.run(argv, check=a.service not in _WARN_ONLY)
        if not result.ok:
            logger.warning(f"could not {a.action} {a.service} ({result.why()}); {a.action} it by hand")
            return
    if master and not engine.wait_new_worker(master, before):
        logger.warning("haproxy started no worker on its new config: see journalctl -u haproxy")
    logger.info(f"{'Reloaded' if a.action is Action.RELOAD else 'Restarted'} {a.service} ({a.reason})")


def _haproxy_master() -> int | None:
    """The pid of the HAProxy master that systemd runs (None: not running)."""
    result = runner.run(["systemctl", "show", "--property", "MainPID", "--value", "haproxy"], check=False)
    pid = result.stdout.strip() if result.ok else ""
    return int(pid) if pid.isdigit() and pid != "0" else None


def _perform_supervised(root: Sysroot, a: ServiceAction) -> None:
    """A process Kestrel itself started for ROOT: SIGHUP where the service re-reads its files on it, HAProxy's
    own reload, else a restart."""
    record = supervisor.find(root, a.service)
    if a.action is Action.RELOAD and a.service == "haproxy" and record:
        if not engine.reload_haproxy(record.pid):
            logger.warning(f"haproxy started no worker on its new config: see {record.log}")
            return
    elif a.action is Action.RELOAD and a.service in _SIGHUP:
        supervisor.send(root, a.service, signal.SIGHUP)
    else:
        supervisor.restart(root, a.service)
        logger.info(f"Restarted {a.service} ({a.reason})")
        return
    logger.info(f"Reloaded {a.service} ({a.reason})")
