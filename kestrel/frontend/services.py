"""Service actions, by the tree's ServiceMode: systemd units on a real frontend, else Kestrel-supervised processes."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

from kestrel import runner, supervisor
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
    "kestrel-monitor": ("kestrel-monitor", ["systemctl", "restart", "kestrel-monitor"]),
}
# A failed reload of these is only a warning: the file is written, the admin reloads by hand.
_WARN_ONLY = {"ssh"}
# Supervised services that re-read their files on SIGHUP; the others are restarted.
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
    if a.service == "nfs-ganesha":
        return [["systemctl", "daemon-reload"], argv]  # Kestrel's drop-in may have changed
    if a.service == "kestrel-monitor":  # Kestrel's own unit: it changed, so systemd re-reads it; it starts at boot
        return [["systemctl", "daemon-reload"], ["systemctl", "enable", "kestrel-monitor"], argv]
    return [argv]


def _perform_on_host(a: ServiceAction) -> None:
    for argv in systemd_commands(a):
        result = runner.run(argv, check=a.service not in _WARN_ONLY)
        if not result.ok:
            logger.warning(f"could not {a.action} {a.service} ({result.why()}); {a.action} it by hand")
            return
    logger.info(f"{'Reloaded' if a.action is Action.RELOAD else 'Restarted'} {a.service} ({a.reason})")


def _perform_supervised(root: Sysroot, a: ServiceAction) -> None:
    """A process Kestrel itself started for ROOT: SIGHUP where the service re-reads its files on it, else a restart."""
    if a.action is Action.RELOAD and a.service in _SIGHUP:
        supervisor.send(root, a.service, signal.SIGHUP)
        logger.info(f"Reloaded {a.service} ({a.reason})")
    else:
        supervisor.restart(root, a.service)
        logger.info(f"Restarted {a.service} ({a.reason})")
