"""nginx serving the boot files over HTTP: a site for a real frontend, a standalone config for the lab."""

from __future__ import annotations

from kestrel import runner
from kestrel.sysroot import LOG_DIR, Sysroot

SITE_PATH = "/etc/nginx/conf.d/kestrel.conf"
STANDALONE_PATH = "/etc/kestrel/nginx.conf"
# The boot server's access log (combined format): the status reads boot fetches from it.
ACCESS_LOG = f"{LOG_DIR}/nginx-access.log"


def foreground_argv(root: Sysroot) -> list[str]:
    return [runner.which("nginx") or "nginx", "-c", root.sys(STANDALONE_PATH), "-e", "stderr"]
