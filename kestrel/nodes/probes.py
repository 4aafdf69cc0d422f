"""What SSH probes learned about each node (last answer, the boot it answered from, uptime, load, booted root):
one JSON file keyed by MAC, written only by the status monitor; pure updates and the probe's one command."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from kestrel import runner
from kestrel.errors import InputError
from kestrel.nodes import ssh
from kestrel.nodes import state as nodestate
from kestrel.nodes.stages import Event, Stage
from kestrel.sysroot import Sysroot

PROBES_PATH = "/var/lib/kestrel/probes.json"
# One SSH read per node and probe, fixed text: the facts of `check` plus the boot's identity, uptime and load.
PROBE_COMMAND = (
    "echo boot_id=$(cat /proc/sys/kernel/random/boot_id); echo uptime=$(cut -d' ' -f1 /proc/uptime); "
    "echo load=$(cut -d' ' -f1-3 /proc/loadavg); " + nodestate.FACTS_COMMAND
)


@dataclass(frozen=True)
class Answer:
    """A node's answer to PROBE_COMMAND."""

    boot_id: str
    uptime: float
    load: tuple[float, float, float]
    facts: nodestate.Facts


@dataclass(frozen=True)
class Probe:
    ok_at: float | None = None  # the last answer
    ready_at: float | None = None  # the first answer of the boot it answers from now
    boot_id: str | None = None
    booted_at: float | None = None  # when that boot began (the answer's time minus its uptime)
    failed_at: float | None = None  # the first failed probe since the last answer
    down_at: float | None = None  # when it was marked down (it had answered, then stopped)
    load: tuple[float, float, float] | None = None
    root: str | None = None  # the image root it booted (system path)


Probes = dict[str, Probe]


def parse_answer(output: str) -> Answer:
    """PROBE_COMMAND's KEY=VALUE lines; ValueError if they are not all there."""
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    try:
        one, five, fifteen = (float(v) for v in values["load"].split())
        return Answer(
            values["boot_id"].strip(), float(values["uptime"]), (one, five, fifteen), nodestate.parse_facts(output)
        )
    except (KeyError, ValueError):
        raise ValueError(f"unexpected answer to the probe: {output[:120]!r}") from None


def probe(pool: ssh.Pool, target: ssh.Target, timeout: float) -> Answer | str:
    """One SSH read of PROBE_COMMAND on TARGET through POOL: its answer, or why it gave none (a short sentence)."""
    result = runner.run([PROBE_COMMAND], via=pool.on(target), timeout=timeout, check=False)
    if not result.ok:
        return result.why()
    try:
        return parse_answer(result.stdout)
    except ValueError as e:
        return str(e)


def answered(probes: Probes, mac: str, now: float, answer: Answer) -> Probes:
    """PROBES after MAC answered at NOW; a new boot (another boot_id) is SSH-ready from now, a node marked down is
    up again."""
    have = probes.get(mac, Probe())
    same_boot = have.boot_id == answer.boot_id and have.ready_at is not None
    new = Probe(
        ok_at=now,
        ready_at=have.ready_at if same_boot else now,
        boot_id=answer.boot_id,
        booted_at=now - answer.uptime,
        load=answer.load,
        root=answer.facts.root,
        # an answer ends a down mark, also in the same boot: kept, one later failed probe would show it down
        # again at once, before it failed for a probe interval
    )
    return {**probes, mac: new}


def failed(probes: Probes, mac: str, now: float) -> Probes:
    """PROBES after MAC did not answer at NOW (the first failure since its last answer is kept)."""
    have = probes.get(mac, Probe())
    return {**probes, mac: replace(have, failed_at=have.failed_at if have.failed_at else now)}


def is_failing(probe: Probe) -> bool:
    return probe.failed_at is not None and (probe.ok_at is None or probe.failed_at > probe.ok_at)


def marked_down(probes: Probes, mac: str, now: float) -> Probes:
    return {**probes, mac: replace(probes.get(mac, Probe()), down_at=now)}


def events(probe: Probe, booted: tuple[str, str] | None) -> list[Event]:
    """The stage events a probe record stands for: SSH-ready (with BOOTED, the image and version of its root)
    and down. Only a failure since the last answer keeps a node down."""
    out = []
    if probe.ready_at is not None:
        image, version = booted or (None, None)
        out.append(Event(probe.ready_at, Stage.SSH, image=image, version=version, source="ssh"))
    if probe.down_at is not None and is_failing(probe):
        out.append(Event(probe.down_at, Stage.DOWN, source="check"))
    return out


def parse_probes(text: str, where: str = PROBES_PATH) -> Probes:
    try:
        data = json.loads(text)
        return {
            mac: Probe(**{**v, "load": tuple(v["load"]) if v.get("load") else None}) for mac, v in data["nodes"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{where}: not a Kestrel probes file ({e}); remove it to start afresh") from None


def format_probes(probes: Probes) -> bytes:
    data = {
        "version": 1,
        "nodes": {mac: {k: v for k, v in asdict(p).items() if v is not None} for mac, p in sorted(probes.items())},
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def load_probes(root: Sysroot) -> Probes:
    data = root.read(PROBES_PATH)
    return parse_probes(data.decode("utf-8", "replace"), root.sys(PROBES_PATH)) if data else {}
