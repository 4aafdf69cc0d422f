"""Taking Kestrel off a frontend: the files it put into the system's own configuration go, the services that read
them are reloaded, its units are stopped and disabled. The admin's data stays: /etc/kestrel (config, registry,
users), /var/lib/kestrel, images and boot files under /srv/kestrel, the homes, the root key, the logs."""

from __future__ import annotations

from kestrel.config import Config
from kestrel.frontend import dnsmasq, nfs, nginx, services, units
from kestrel.frontend.desired import ETC_HOSTS, LEASE_HOOK
from kestrel.nodes.ssh import KNOWN_HOSTS
from kestrel.plan import Action, FileChange, Plan, RunCommand, ServiceAction
from kestrel.sysroot import Sysroot, decode, encode, replace_block
from kestrel.users.rootaccess import SSHD_DROPIN

# Kestrel's files in the system's configuration, and what reads each one.
_FILES = [
    (dnsmasq.CONF_PATH, "dnsmasq", Action.RESTART),
    (dnsmasq.DROPIN, "dnsmasq", Action.RESTART),
    (nginx.SITE_PATH, "nginx", Action.RELOAD),
    (nfs.EXPORTS_PATH, "nfs-kernel", Action.RELOAD),
    (nfs.GANESHA_DROPIN, "nfs-ganesha", Action.RESTART),
    (nfs.GANESHA_PATH, "nfs-ganesha", Action.RESTART),
    (nfs.GANESHA_EXPORTS, "nfs-ganesha", Action.RESTART),
    (SSHD_DROPIN, "ssh", Action.RELOAD),
    (LEASE_HOOK, "", Action.RELOAD),
]
_BLOCKS = [ETC_HOSTS, KNOWN_HOSTS]


def plan_uninstall(root: Sysroot, config: Config) -> Plan:
    """Kestrel's units stopped and removed, its drop-ins removed (their services reloaded), its blocks cut out."""
    plan = Plan()
    unit_dir = root.path(units.UNIT_DIR)
    found_units = sorted(p.name for p in unit_dir.glob("kestrel-*")) if unit_dir.is_dir() else []
    for name in found_units:
        if root.uses_systemd and units.is_unit(name):
            plan.add(RunCommand(("systemctl", "disable", "--now", name), f"Stopped and disabled {name}"))
        plan.add(FileChange(f"{units.UNIT_DIR}/{name}", root.read(f"{units.UNIT_DIR}/{name}"), None))
    for path, service, action in _FILES:
        old = root.read(path)
        if old is None:
            continue
        plan.add(FileChange(path, old, None))
        if service:
            plan.add_action(ServiceAction(service, action, f"{path} removed", start=False))
    for path in _BLOCKS:
        text = decode(root.read(path))
        if text is not None and (rest := replace_block(text, "", root.sys(path))) != text:
            plan.add(FileChange(path, encode(text), encode(rest), mode=root.path(path).stat().st_mode & 0o7777))
    if found_units and root.uses_systemd:
        plan.add(RunCommand(("systemctl", "daemon-reload"), "Reloaded systemd's units"))
    return plan


def uninstall(root: Sysroot, config: Config) -> Plan:
    """Carry out plan_uninstall under the lock."""
    with root.lock():
        plan = plan_uninstall(root, config)
        services.apply(root, plan)
        return plan
