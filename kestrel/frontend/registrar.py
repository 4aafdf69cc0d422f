"""The registrar: the one process that applies the lease events the hook queued, in batches through
node_changes (one write of each file and one dnsmasq reload per batch, not per node).

An event leaves the queue only after its batch is on disk, so a registrar that is down or killed loses
nothing: the next one applies what is queued (a replayed batch changes nothing that is already there).
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType

from kestrel.config import Config, load_config
from kestrel.errors import KestrelError
from kestrel.frontend import hostkeys, registration
from kestrel.nodes import leasequeue
from kestrel.slurm import conf as slurm_conf
from kestrel.slurm import join as slurm_join
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)

BATCH = 1000  # events per batch at most: one plan stays quick even when thousands are queued
POLL = 0.1  # seconds between looks at an empty queue
RETRY = 5.0  # seconds before a failed batch is tried again
READY = "Registrar waiting for lease events"  # the log line the lab waits for


def apply_batch(root: Sysroot, config: Config, limit: int = BATCH, config_path: Path | None = None) -> int:
    """Apply the events at the head of the queue as one change; how many queued files it consumed.

    With the slurm module (and CONFIG_PATH), a node whose lease is new or renewed is booting: it joins Slurm
    once it answers SSH, in the background (slurm.join.spawn_join); with the firewall module it gets its image's
    host keys first, the same way (hostkeys.spawn)."""
    pending = leasequeue.read_pending(root, limit)
    for w in pending.warnings:
        logger.warning(w)
    if pending.events:
        found = registration.lease_events(root, config, pending.events)
        logger.info(f"Applied {len(pending.events)} lease event{'s' * (len(pending.events) != 1)}")
        booting = {n.name for e, n in zip(pending.events, found, strict=True) if n and e.action in ("add", "old")}
        if config_path is not None and hostkeys.enabled(config):
            for name in sorted(booting):
                hostkeys.spawn(root, config_path, name)
        if config_path is not None and slurm_conf.enabled(config):
            for name in sorted(booting):
                slurm_join.spawn_join(root, config_path, name)
    leasequeue.acknowledge(pending.files)
    return len(pending.files)


def drain(root: Sysroot, config_path: Path) -> int:
    """Apply every queued event, batch after batch (kestrel-nodes registrar --once); how many were consumed."""
    total = 0
    while consumed := apply_batch(root, load_config(config_path), config_path=config_path):
        total += consumed
    return total


def serve(root: Sysroot, config_path: Path) -> None:
    """Apply queued events until SIGTERM or SIGINT (a batch under way is finished first).

    The config is read again for every batch, so a change of nodes.auto_register needs no restart. A failing
    batch (a bad config, a full disk) stays queued and is tried again.
    """
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    logger.info(f"{READY} in {root.sys(leasequeue.QUEUE_DIR)}")
    while not stopping:
        try:
            consumed = (
                apply_batch(root, load_config(config_path), config_path=config_path)
                if leasequeue.queued_files(root)
                else 0
            )
        except (KestrelError, OSError) as e:
            logger.warning(f"lease events not applied, trying again in {RETRY:g} s: {e}")
            _sleep(RETRY, stopping)
            continue
        if not consumed:
            # Polling an empty folder costs one directory read a tick, and a batch starts within POLL.
            time.sleep(POLL)
    logger.info("Registrar stopped")


def _sleep(seconds: float, stopping: list[int]) -> None:
    deadline = time.monotonic() + seconds
    while not stopping and time.monotonic() < deadline:
        time.sleep(POLL)
