"""nginx serving the boot files over HTTP: a site for a real frontend, a standalone config for the lab."""

from __future__ import annotations

from kestrel import runner
from kestrel.sysroot import Sysroot

SITE_PATH = "/etc/nginx/conf.d/kestrel.conf"
STANDALONE_PATH = "/etc/kestrel/nginx.conf"


def foreground_argv(root: Sysroot) -> list[str]:
    return [runner.which("nginx") or "nginx", "-c", root.sys(STANDALONE_PATH), "-e", "stderr"]
