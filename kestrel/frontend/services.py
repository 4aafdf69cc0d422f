"""Service actions, by the tree's ServiceMode: systemd units on a real frontend, else Kestrel-supervised processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
from collections.abc import Iterable

from kestrel import runner, supervisor
from kestrel.frontend import units
from kestrel.gateway import engine
from kestrel.plan import Action, Plan, ServiceAction, apply_changes, stale_temp_files, touches_service
from kestrel.sysroot import Sysroot, atomic_write

logger = logging.getLogger(__name__)

# service -> (systemd unit, how to reload it on the host)
_HOST = {
    "dnsmasq": ("dnsmasq", ["systemctl", "reload", "dnsmasq"]),
    "nginx": ("nginx", ["systemctl", "reload", "nginx"]),
    "nfs-kernel": ("nfs-kernel-server", ["exportfs", "-ra"]),
    "nfs-ganesha": ("nfs-ganesha", ["systemctl", "reload", "nfs-ganesha"]),
    "ssh": ("ssh", ["systemctl", "reload", "ssh"]),
    "haproxy": ("haproxy", ["systemctl", "reload", "haproxy"]),
    "slurmctld": ("slurmctld", ["systemctl", "reload", "slurmctld"]),
    "munge": ("munge", ["systemctl", "restart", "munge"]),
}
# Services whose unit has a Kestrel drop-in: systemd reads it again before any action.
_DROPIN = {"nfs-ganesha", "haproxy", "slurmctld"}
# ... before a restart only: dnsmasq reloads on every registered node, its drop-in changes with a restart.
_DROPIN_ON_RESTART = {"dnsmasq"}
# A failed reload of these is only a warning: the file is written, the admin reloads by hand. Kestrel never
# starts them either: they are the admin's services, Kestrel only drops a file in their configuration.
_WARN_ONLY = {"ssh"}
# Supervised services that re-read their files on SIGHUP (slurmctld: `scontrol reconfigure`); HAProxy reloads on
# SIGUSR2 (gateway.engine); the others are restarted.
_SIGHUP = {"dnsmasq", "nginx", "nfs-ganesha", "slurmctld"}


# Service actions owed: written before a plan's files, removed once its actions are done, so that a writer
# killed in between (files new, dnsmasq never reloaded) has its reload replayed by the next writer.
PENDING_PATH = "/var/lib/kestrel/pending-actions.json"


def apply(root: Sysroot, plan: Plan) -> None:
    """The one way a plan is carried out: its steps, then its service actions and any a killed writer owed."""
    for stale in stale_temp_files(root, [PENDING_PATH]):  # the record's writer was killed mid-write (we hold the lock)
        root.path(stale).unlink(missing_ok=True)
    pending = load_pending(root)
    owed = Plan()
    for a in (*pending, *plan.actions):
        owed.add_action(a)
    if plan.actions and owed.actions != pending:
        atomic_write(root.path(PENDING_PATH), _dump(owed.actions), 0o600)
    apply_changes(root, plan)
    perform(root, owed.actions)
    if owed.actions:
        root.path(PENDING_PATH).unlink(missing_ok=True)


def load_pending(root: Sysroot) -> list[ServiceAction]:
    """The actions a killed writer owed (none if the record is missing or unreadable: it is Kestrel's own)."""
    data = root.read(PENDING_PATH)
    if not data:
        return []
    try:
        return [
            ServiceAction(str(a["service"]), Action(a["action"]), str(a["reason"]), bool(a.get("start", True)))
            for a in json.loads(data)
            if a["service"] in _HOST
        ]
    except (ValueError, KeyError, TypeError):
        logger.warning(f"{root.sys(PENDING_PATH)}: unreadable, ignored")
        return []


def _dump(actions: list[ServiceAction]) -> bytes:
    return json.dumps([dataclasses.asdict(a) for a in actions], indent=1).encode()


def perform(root: Sysroot, actions: Iterable[ServiceAction]) -> None:
    for a in actions:
        if not touches_service(root, a):
            logger.info(f"Skipped {a.action} of {a.service}: not running under {root.root}")
        elif root.uses_systemd:
            _perform_on_host(a)
        else:
            _perform_supervised(root, a)


def unit_of(service: str) -> str:
    """The systemd unit of a service action's name."""
    return service if units.is_unit(service) else _HOST[service][0]


def systemd_commands(a: ServiceAction, active: bool = True) -> list[list[str]]:
    """The commands that carry out A on a real frontend: systemctl reload or restart of its unit when ACTIVE,
    else enable --now (a service Kestrel configures runs at every boot, started the first time its files
    are written)."""
    unit = unit_of(a.service)
    # Kestrel's drop-in (ganesha) or unit files may have changed
    dropin = a.service in _DROPIN or (a.service in _DROPIN_ON_RESTART and (a.action is Action.RESTART or not active))
    reload_units = [["systemctl", "daemon-reload"]] if dropin or units.is_unit(a.service) else []
    if not active:
        return [*reload_units, ["systemctl", "enable", "--now", unit]]
    if a.action is Action.RELOAD and not units.is_unit(a.service):
        return [*reload_units, _HOST[a.service][1]]
    if a.service == "nfs-kernel":
        return [_HOST[a.service][1]]
    return [*reload_units, ["systemctl", "restart", unit]]


def is_active(unit: str) -> bool:
    return runner.run(["systemctl", "is-active", "--quiet", unit], check=False).ok


def _perform_on_host(a: ServiceAction) -> None:
    active = is_active(unit_of(a.service))
    if not active and (not a.start or a.service in _WARN_ONLY):
        logger.info(f"Skipped {a.action} of {a.service}: not running")
        return
    master = _haproxy_master() if a.service == "haproxy" and active and a.action is Action.RELOAD else None
    before = engine.workers(master) if master else set()
    for argv in systemd_commands(a, active):
        result = runner.run(argv, check=a.service not in _WARN_ONLY)
        if not result.ok:
            logger.warning(f"could not {a.action} {a.service} ({result.why()}); {a.action} it by hand")
            return
    if master and not engine.wait_new_worker(master, before):
        logger.warning("haproxy started no worker on its new config: see journalctl -u haproxy")
    done = "Started" if not active else ("Reloaded" if a.action is Action.RELOAD else "Restarted")
    logger.info(f"{done} {a.service} ({a.reason})")


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
        # dnsmasq 2.90 (Debian 12) segfaults on a SIGHUP once it has answered a host of its dhcp-hostsfile whose
        # line has set: tags (every registry line has), often at the second reload: registrations in a row (a
        # storm of container nodes) hit it. Its leases are on disk; a new one picks up where it stopped.
        if a.service == "dnsmasq" and (revived := supervisor.revive(root, a.service, after=0.5)):
            logger.warning(f"dnsmasq died on its reload (a dnsmasq 2.90 bug): started it again (pid {revived.pid})")
    else:
        supervisor.restart(root, a.service)
        logger.info(f"Restarted {a.service} ({a.reason})")
        return
    logger.info(f"Reloaded {a.service} ({a.reason})")
