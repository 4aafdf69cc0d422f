"""The fuzz tier: generated bad inputs (kestrel.yaml, image definitions, leases, node/user/image arguments) against
the real programs on a scratch root. Each must exit 2 with one line naming the file or argument, without a
traceback, within LIMIT seconds, changing nothing under the root. KESTREL_FUZZ_SEED=N replays a run."""

from __future__ import annotations

import collections
import os
import random
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fuzz import runner
from tests.fuzz.cases import MAC, bomb, generate

CASES = int(os.environ.get("KESTREL_FUZZ_CASES", "1200"))
PROCESSES = 40  # of them, also run as real processes


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered frontend with one node: what the bad inputs must leave as it is."""
    root = tmp_path_factory.mktemp("fuzz-root")
    shutil.copytree(REPO / "etc-kestrel", root / "etc" / "kestrel")
    for program, args in (("reconfigure", ["--frontend"]), ("nodes", ["add", "--mac", "52:54:00:cc:00:01"])):
        code, err, _ = runner.in_process(root, program, args)
        assert code == 0, err
    shutil.copytree(root, root.with_name("fuzz-pristine"), symlinks=True)
    return root


def seed() -> int:
    value = int(os.environ.get("KESTREL_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nfuzz seed: {value} (KESTREL_FUZZ_SEED={value} replays this run)")
    return value


def test_bad_inputs_are_refused_cleanly(root: Path) -> None:
    value = seed()
    cases = generate(value, CASES, "/fuzz")
    processes = set(random.Random(value).sample(range(len(cases)), PROCESSES))
    figures: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    for index, case in enumerate(cases):
        as_process = index in processes
        outcome = runner.execute(root, case, root.with_name("fuzz-pristine"), in_own_process=as_process)
        why = runner.verdict(case, outcome)
        figures["cases run"] += 1
        figures["real processes" if as_process else "in process"] += 1
        kinds[case.kind] += 1
        figures["exit-2 clean"] += why is None
        figures["tracebacks"] += "Traceback" in outcome.stderr
        figures["hangs"] += outcome.code is None
        figures["changed-on-reject"] += bool(outcome.changed)
        figures["slowest CPU ms"] = max(figures["slowest CPU ms"], int(outcome.seconds * 1000))
        if why:
            failures.append(f"case {index} ({case.describe()}): {why}")
    print("fuzz figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print("fuzz cases by input: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    assert not failures, f"seed {value}: {len(failures)} of {len(cases)} not refused cleanly:\n" + "\n".join(
        failures[:25]
    )


def test_an_alias_bomb_stops_neither_the_lease_hook_nor_the_registrar(root: Path) -> None:
    """dnsmasq runs the rendered hook for every lease and waits for it: with a bomb in kestrel.yaml the hook (it
    reads no config) still queues the event at once, and the registrar refuses the config in one line, in its
    own process, leaving the event queued for when the config is fixed."""
    hook = root / "usr/local/lib/kestrel/lease-hook"
    config = root / "etc/kestrel/kestrel.yaml"
    queue = root / "var/lib/kestrel/lease-events"
    good = config.read_bytes()
    config.write_text(bomb(random.Random(), 9, 10))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KESTREL_")}
        argv = [str(hook), "add", MAC, "10.10.0.150"]
        hooked = subprocess.run(argv, capture_output=True, text=True, timeout=runner.WALL, env=env)
        assert hooked.returncode == 0, hooked.stderr
        queued = sorted(queue.iterdir())
        before = runner.snapshot(root)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        code, stderr, _ = runner.as_process(root, "nodes", ["registrar", "--once"])
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
        assert runner.snapshot(root) == before and sorted(queue.iterdir()) == queued
    finally:
        config.write_bytes(good)
        shutil.rmtree(queue, ignore_errors=True)
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert "aliases expand to more than" in stderr and str(config) in stderr
    assert seconds < runner.LIMIT, f"{seconds:.2f} s of CPU (interpreter start-up included)"
