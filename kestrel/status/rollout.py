"""Power actions and rolling updates: reboot the nodes that run an older version of their image, N at a time,
each batch back and SSH-ready on the current version before the next; stop at the first that is not."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kestrel.config import Config
from kestrel.errors import KestrelError
from kestrel.frontend.node_changes import mark_states
from kestrel.nodes import power, ssh
from kestrel.nodes.power import Power
from kestrel.nodes.probes import Answer
from kestrel.status.report import NodeStatus, version_of_root
from kestrel.sysroot import Sysroot

logger = logging.getLogger(__name__)


def pool_for(root: Sysroot, config: Config) -> ssh.Pool:
    return ssh.root_pool(root, config.nodes.ssh_key, float(config.nodes.ssh_timeout), config.network.netns)


def power_nodes(
    root: Sysroot, config: Config, targets: list[ssh.Target], action: Power, *, wait: bool, timeout: float
) -> None:
    """Power off or reboot TARGETS; WAIT: until they are down (poweroff) or back from a new boot (reboot)."""
    started = time.monotonic()
    with pool_for(root, config) as pool:
        sent = _request(pool, targets, action, config)
        if not wait:
            return
        if action is Power.POWEROFF:
            still = power.wait_down(pool, targets, started + timeout)
            if still:
                raise KestrelError(f"still answering after {timeout:g} s: {', '.join(t.name for t in still)}")
            logger.info(f"Down: {', '.join(t.name for t in targets)} ({time.monotonic() - started:.0f} s)")
            return
        back, late = power.wait_back(pool, sent, started + timeout, _said_back(started))
        _record_back(root, config, back)
        if late:
            raise KestrelError(f"not back after {timeout:g} s: {', '.join(t.name for t in late)}")


def _request(
    pool: ssh.Pool, targets: list[ssh.Target], action: Power, config: Config, patience: float = 0.0
) -> list[power.Sent]:
    sent = power.request(pool, targets, action, float(config.nodes.ssh_timeout), patience=patience)
    failed = [s for s in sent if s.error]
    for s in sent:
        if not s.error:
            logger.info(f"{'Powering off' if action is Power.POWEROFF else 'Rebooting'} {s.target.name}")
    if failed:
        raise KestrelError("; ".join(f"{s.target.name}: {s.error}" for s in failed) + f" (no {action} sent there)")
    return sent


def _said_back(started: float) -> Callable[[ssh.Target, Answer], None]:
    def said(target: ssh.Target, answer: Answer) -> None:
        found = version_of_root(answer.facts.root)
        on = f" on {found[0]} {found[1]}" if found else ""
        logger.info(f"{target.name} is back{on}, SSH-ready ({time.monotonic() - started:.0f} s)")

    return said


def _record_back(root: Sysroot, config: Config, back: dict[str, Answer]) -> None:
    """The nodes that came back are up, with the root they booted (so its version is kept while they run it)."""
    if back:
        mark_states(root, config, {name: (True, a.facts) for name, a in back.items()})


def rollout(root: Sysroot, config: Config, rows: list[NodeStatus], *, batch: int, timeout: float) -> list[str]:
    """Reboot the up nodes among ROWS that drift, BATCH at a time; the names updated. Stops (KestrelError) at the
    first batch with a node that fails to reboot, to come back within TIMEOUT, or to come back current."""
    todo = [r for r in rows if r.state == "up" and r.drift]
    for r in rows:
        if r.state == "up" and r.drift is None:
            logger.warning(f"{r.name}: the version it booted is unknown; not rebooted")
    if not todo:
        logger.info("Every up node runs the current version of its image: nothing to roll out")
        return []
    done: list[str] = []
    with pool_for(root, config) as pool:
        for i in range(0, len(todo), batch):
            group = todo[i : i + batch]
            started = time.monotonic()
            # a node that was up but is too busy to answer now is asked again within the batch's time, as it
            # would be waited for to come back
            targets = [ssh.Target(r.name, r.ip) for r in group]
            sent = _request(pool, targets, Power.REBOOT, config, patience=timeout)
            back, late = power.wait_back(pool, sent, started + timeout, _said_back(started))
            _record_back(root, config, back)
            stale = [
                f"{r.name} came back on {_shown(back[r.name])}, not {r.image} {r.current_version}"
                for r in group
                if r.name in back and version_of_root(back[r.name].facts.root) != (r.image, r.current_version)
            ]
            problems = [f"{t.name} not back after {timeout:g} s" for t in late] + stale
            done += [r.name for r in group if r.name in back and not any(p.startswith(r.name) for p in stale)]
            if problems:
                raise KestrelError(f"{'; '.join(problems)}: rollout stopped ({len(done)} of {len(todo)} updated)")
    logger.info(f"Rolled out: {len(done)} nodes updated ({', '.join(done)})")
    return done


def _shown(answer: Answer) -> str:
    found = version_of_root(answer.facts.root)
    return f"{found[0]} {found[1]}" if found else "an unknown version"
