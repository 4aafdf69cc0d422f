"""The status page: static index.html and status.json under the boot HTTP root's status/, served by the frontend's
nginx (no JavaScript), rewritten by the monitor whenever what they show changes."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kestrel.config import Config
from kestrel.frontend.desired import HTTP_ROOT
from kestrel.nodes import bootlog
from kestrel.nodes.stages import Stage
from kestrel.plan import Desired, plan_files
from kestrel.status.report import NodeStatus, images_in_use, iso
from kestrel.sysroot import Sysroot, encode
from kestrel.templates import render

logger = logging.getLogger(__name__)

STATUS_DIR = f"{HTTP_ROOT}/status"
STATES = ["booting", "down", "up", "unknown"]  # the page's order: what needs a look first
CHAIN = [s for s in Stage if s not in (Stage.REGISTERED, Stage.DOWN)]


def document(rows: list[NodeStatus], now: float) -> dict[str, Any]:
    """status.json: when, every node's row (as `kestrel-nodes status --json`), the images and who runs what."""
    return {"generated": iso(now), "nodes": [r.as_json() for r in rows], "images": images_in_use(rows)}


def shown(row: NodeStatus, now: float, relative: bool) -> dict[str, Any]:
    """ROW for people: times relative to NOW (a terminal) or absolute UTC (a page read later), '-' for unknown."""

    def when(at: float | None) -> str:
        if at is None:
            return "-"
        return f"{duration(now - at)} ago" if relative else (iso(at) or "-").replace("T", " ")

    return {
        "name": row.name,
        "state": row.state,
        "stage": str(row.stage),
        "since": when(row.since),
        "last_seen": when(row.last_seen),
        "image": row.image,
        "booted_version": row.booted_version or "-",
        "version": row.booted_version or "-",
        "drift": "reboot to update" if row.drift else "",
        "uptime": duration(row.uptime) if row.uptime is not None else "-",
        "load": " ".join(f"{v:.2f}" for v in row.load) if row.load else "-",
        "firewall": firewall_text(row.firewall),
    }


def firewall_text(found: tuple[int | None, int] | None) -> str:
    """The firewall module's packets of a node: '120 in' (its pair is in the set), 'not in set', '+ N refused'."""
    if found is None:
        return "-"
    accepted, refused = found
    text = "not in set" if accepted is None else f"{accepted} in"
    return text + (f", {refused} refused" if refused else "")


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def desired_page(root: Sysroot, config: Config, rows: list[NodeStatus], now: float) -> list[Desired]:
    doc = document(rows, now)
    counts = {state: sum(1 for r in rows if r.state == state) for state in STATES}
    html = render(
        root,
        "status.html",
        cluster=config.cluster.name,
        rows=[shown(r, now, relative=False) for r in rows],
        firewall=any(r.firewall is not None for r in rows),
        states=STATES,
        counts=counts,
        chain=[str(s) for s in CHAIN],
        images=doc["images"],
        generated=doc["generated"],
    )
    return [
        Desired(f"{STATUS_DIR}/index.html", encode(html)),
        Desired(f"{STATUS_DIR}/status.json", encode(json.dumps(doc, indent=1, sort_keys=True) + "\n")),
        # What the initramfs fetches once its root is mounted (bootlog reads the fetch from nginx's log).
        Desired(bootlog.MOUNTED_PATH.replace("/status", STATUS_DIR, 1), b"mounted\n"),
    ]


def write_page(root: Sysroot, config: Config, rows: list[NodeStatus], now: float | None = None) -> bool:
    """Rewrite the page's files that changed (atomically, under the lock); whether anything was written."""
    wanted = desired_page(root, config, rows, time.time() if now is None else now)
    with root.lock():
        plan = plan_files(root, wanted, directories=[STATUS_DIR])
        for step in plan.steps:
            logger.debug(step.apply(root))
    return not plan.is_empty
