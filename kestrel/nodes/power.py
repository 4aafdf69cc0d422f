"""Power nodes off and reboot them over SSH (gracefully: systemd on the node), then wait until they are down, or
back from a new boot and SSH-ready. Every failure is one sentence naming the node."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from kestrel.nodes import fanout, probes, ssh
from kestrel.nodes.probes import Answer

logger = logging.getLogger(__name__)

POLL = 2.0  # seconds between two looks at a node that is on its way down or up


class Power(StrEnum):
    POWEROFF = "poweroff"
    REBOOT = "reboot"


# The boot id first (a reboot is over once the node answers from another boot), then systemd's job, queued so
# the command returns before the connection goes down with the node.
_COMMANDS = {
    Power.POWEROFF: "cat /proc/sys/kernel/random/boot_id; systemctl --no-block poweroff",
    Power.REBOOT: "cat /proc/sys/kernel/random/boot_id; systemctl --no-block reboot",
}


@dataclass(frozen=True)
class Sent:
    target: ssh.Target
    boot_id: str | None  # the boot it was asked to leave; None: the request failed (see error)
    error: str | None = None


def request(
    pool: ssh.Pool, targets: list[ssh.Target], power: Power, timeout: float, parallel: int = 16, patience: float = 0.0
) -> list[Sent]:
    """Ask every target to power off or reboot, in parallel; what each answered. A target that does not answer
    SSH is asked again for up to PATIENCE seconds before the request (sent once, on the connection that answered)."""
    unreached = fanout.reach(pool, targets, patience, parallel) if patience > 0 else {}
    asked = [t for t in targets if t not in unreached]
    ran = fanout.run_many(pool, asked, _COMMANDS[power], parallel=parallel, timeout=timeout)
    results = dict(zip(asked, ran, strict=True))
    out = []
    for t in targets:
        if t in unreached:
            out.append(Sent(t, None, unreached[t]))
            continue
        r = results[t]
        words = r.stdout.split()
        boot_id = words[0] if words and len(words[0]) == 36 else None
        # The node may close the connection before the exit status arrives: it printed its boot id, so it was asked.
        sent = r.ok or (boot_id is not None and r.returncode is None)
        out.append(Sent(t, boot_id if sent else None, None if sent else r.why()))
    return out


def wait_down(
    pool: ssh.Pool, targets: list[ssh.Target], deadline: float, clock: Callable[[], float] = time.monotonic
) -> list[ssh.Target]:
    """Wait until no target answers SSH any more (or DEADLINE); the ones still answering."""
    left = list(targets)
    while left and clock() < deadline:
        answers = fanout.fan_out(left, lambda t: _answer(pool, t), parallel=16)
        left = [t for t, a in zip(left, answers, strict=True) if isinstance(a, Answer)]
        if left:
            time.sleep(POLL)
    return left


def wait_back(
    pool: ssh.Pool,
    sent: list[Sent],
    deadline: float,
    on_back: Callable[[ssh.Target, Answer], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Answer], list[ssh.Target]]:
    """Wait until every target answers SSH from a new boot (or DEADLINE): the answers by name, and the targets
    that did not come back."""
    pending = {s.target.name: s for s in sent}
    back: dict[str, Answer] = {}
    while pending and clock() < deadline:
        targets = [s.target for s in pending.values()]
        answers = fanout.fan_out(targets, lambda t: _answer(pool, t), parallel=16)
        for t, a in zip(targets, answers, strict=True):
            if isinstance(a, Answer) and a.boot_id != pending[t.name].boot_id:
                back[t.name] = a
                del pending[t.name]
                if on_back:
                    on_back(t, a)
        if pending:
            time.sleep(POLL)
    return back, [s.target for s in pending.values()]


def _answer(pool: ssh.Pool, target: ssh.Target) -> Answer | str:
    return probes.probe(pool, target, pool.connect_timeout + 5)
