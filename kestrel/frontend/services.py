"""Service actions, by the tree's ServiceMode: systemd units on a real frontend, else Kestrel-supervised processes."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable

from kestrel import runner, supervisor
from kestrel.sysroot import Action, ServiceAction, Sysroot

# service -> (systemd unit, how to reload it on the host)
_HOST = {
    "dnsmasq": ("dnsmasq", ["systemctl", "reload", "dnsmasq"]),
    "nginx": ("nginx", ["systemctl", "reload", "nginx"]),
    "nfs-kernel": ("nfs-kernel-server", ["exportfs", "-ra"]),
    "nfs-ganesha": ("nfs-ganesha", ["systemctl", "reload", "nfs-ganesha"]),
}
# Supervised services that re-read their files on SIGHUP; the others are restarted.
_SIGHUP = {"dnsmasq", "nginx", "nfs-ganesha"}


def perform(root: Sysroot, actions: Iterable[ServiceAction], say: Callable[[str], None] = print) -> None:
    for a in actions:
        if root.uses_systemd:
            _perform_on_host(a, say)
        else:
            _perform_supervised(root, a, say)


def systemd_commands(a: ServiceAction) -> list[list[str]]:
    """The commands that carry out A on a real frontend (systemctl reload or restart of its unit)."""
    unit, reload_argv = _HOST[a.service]
    argv = reload_argv if a.action is Action.RELOAD or a.service == "nfs-kernel" else ["systemctl", "restart", unit]
    if a.service == "nfs-ganesha":
        return [["systemctl", "daemon-reload"], argv]  # Kestrel's drop-in may have changed
    return [argv]


def _perform_on_host(a: ServiceAction, say: Callable[[str], None]) -> None:
    for argv in systemd_commands(a):
        runner.run(argv)
    say(f"{'Reloaded' if a.action is Action.RELOAD else 'Restarted'} {a.service} ({a.reason})")


def _perform_supervised(root: Sysroot, a: ServiceAction, say: Callable[[str], None]) -> None:
    """Under a --root other than /, only processes Kestrel itself started for that root are touched."""
    if supervisor.find(root, a.service) is None:
        say(f"Skipped {a.action} of {a.service}: not running under {root.root}")
        return
    if a.action is Action.RELOAD and a.service in _SIGHUP:
        supervisor.send(root, a.service, signal.SIGHUP)
        say(f"Reloaded {a.service} ({a.reason})")
    else:
        supervisor.restart(root, a.service)
        say(f"Restarted {a.service} ({a.reason})")
