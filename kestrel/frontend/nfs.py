"""The NFS server: kernel exports or nfs-ganesha (userspace; the only choice on hosts without nfsd)."""

from __future__ import annotations

from kestrel import runner
from kestrel.sysroot import LOG_DIR, RUN_DIR, Sysroot

EXPORTS_PATH = "/etc/exports.d/kestrel.exports"
GANESHA_PATH = "/etc/ganesha/kestrel.conf"
GANESHA_EXPORTS = "/etc/ganesha/kestrel-exports.conf"  # included by GANESHA_PATH; reloaded by SIGHUP
GANESHA_DROPIN = "/etc/systemd/system/nfs-ganesha.service.d/kestrel.conf"
GANESHA_STATE = "/var/lib/kestrel/ganesha"
GANESHA_PLUGINS = "/usr/lib/x86_64-linux-gnu/ganesha"


def ganesha_foreground_argv(root: Sysroot) -> list[str]:
    """rpcbind and ganesha together (klibc's nfsmount needs the portmapper), one process group.

    Meant to run with a private /run (supervisor.start(private_run=True)): rpcbind's socket lives there.
    """
    log = root.sys(f"{LOG_DIR}/ganesha.log")
    ganesha = runner.which("ganesha.nfsd") or "ganesha.nfsd"
    rpcbind = runner.which("rpcbind") or "rpcbind"
    script = '"$1" -f -w & sleep 0.3; exec "$2" -F -f "$3" -L "$4" -p "$5" -N NIV_EVENT'
    return ["sh", "-c", script, "sh", rpcbind, ganesha, root.sys(GANESHA_PATH), log, root.sys(f"{RUN_DIR}/ganesha.pid")]
