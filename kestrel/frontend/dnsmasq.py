"""dnsmasq: DHCP, TFTP, DNS. Config check before install, the foreground command line."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kestrel import runner
from kestrel.errors import InputError
from kestrel.sysroot import LOG_DIR, Sysroot

CONF_PATH = "/etc/dnsmasq.d/kestrel.conf"
# On a real frontend: Debian's dnsmasq unit is restarted when it dies (templates/dnsmasq.service.conf says why).
DROPIN = "/etc/systemd/system/dnsmasq.service.d/kestrel.conf"
# dnsmasq's own log, with times (log-facility): the status reads DHCPACK and TFTP events from it. Supervised, its
# output goes to the same file.
LOG_PATH = f"{LOG_DIR}/dnsmasq.log"


def check_config(root: Sysroot, content: bytes) -> None:
    """Refuse a config dnsmasq would refuse, before it replaces the one in use."""
    with tempfile.NamedTemporaryFile(prefix="kestrel-dnsmasq-", suffix=".conf") as f:
        f.write(content)
        f.flush()
        proc = runner.run([_dnsmasq(), "--test", f"--conf-file={f.name}"], check=False)
    if proc.returncode is None:  # it did not run (not installed): not the config's fault
        proc.check()
    if not proc.ok:
        why = runner.last_line(proc.stderr).removeprefix(": ").removeprefix("dnsmasq: ")
        why = why.replace(f.name, "the new config")
        raise InputError(f"{root.sys(CONF_PATH)}: dnsmasq --test refused the new config ({why}); the old one stays")


def foreground_argv(root: Sysroot) -> list[str]:
    """dnsmasq in the foreground with only Kestrel's config (the lab and tests supervise it)."""
    return [_dnsmasq(), "--keep-in-foreground", f"--conf-file={root.sys(CONF_PATH)}", "--user=root"]


def registrar_argv(root: Sysroot, config_path: Path) -> list[str]:
    """The registrar that applies the lease events dnsmasq's dhcp-script queues (supervised or a systemd unit)."""
    return runner.kestrel_argv("nodes", "--root", str(root.root), "--config", str(config_path), "registrar")


def _dnsmasq() -> str:
    return runner.which("dnsmasq") or "dnsmasq"
