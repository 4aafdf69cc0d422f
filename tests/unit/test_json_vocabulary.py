"""Every program's --json speaks one vocabulary (kestrel.vocabulary): run each on a scratch root and check it."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata as md
import json
import shutil
import subprocess
from typing import Any

import click
import pytest

from kestrel import vocabulary
from kestrel.config import Config
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot, atomic_write
from kestrel.vm import definitions
from tests.conftest import REPO
from tests.treestate import kestrel
from tests.unit.test_frontend import publish_fake_image

MODULES = {ep.name: ep.module for ep in md.distribution("kestrel").entry_points if ep.group == "console_scripts"}

# every command with --json, as `PROGRAM SUBCOMMAND`, and the arguments it runs with on the scratch root
RUNS: dict[str, list[str]] = {
    "kestrel doctor": ["doctor", "--wait", "0.1"],
    "kestrel-nodes list": ["list"],
    "kestrel-nodes show": ["show", "node01"],
    "kestrel-nodes pending": ["pending"],
    "kestrel-nodes status": ["status"],
    "kestrel-nodes check": ["check"],
    "kestrel-images list": ["list"],
    "kestrel-images explain": ["explain", "default"],
    "kestrel-users list": ["list"],
    "kestrel-vm list": ["list"],
    "kestrel-lab status": ["status"],
    "kestrel-gateway status": ["status"],
    "kestrel-switch status": ["status"],
}
SCRATCH_CONFIG = """
modules: [core, nfsroot, sshd, openmpi, web, gateway]
gateway:
  engine: nginx
servers:  # nothing listens on port 1: kestrel-switch status reports it unreachable (exit 1) with its JSON
  - {name: srv1, address: 127.0.0.1, ssh_port: 1, underlay_interface: lo}
switch:
  server: srv1
"""


def json_commands() -> list[str]:
    """`PROGRAM SUBCOMMAND` of every command, in every program, that has a --json option."""
    found = []
    for program, module_name in sorted(MODULES.items()):
        module = importlib.import_module(module_name)
        top = getattr(module, "command", None) or module.cli
        subs = top.commands if isinstance(top, click.Group) else {"": top}
        for name, sub in subs.items():
            if any("--json" in p.opts for p in sub.params if isinstance(p, click.Option)):
                found.append(f"{program} {name}".strip())
    return sorted(found)


def test_every_json_output_is_run_here() -> None:
    assert json_commands() == sorted(RUNS)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Sysroot:
    """A frontend's tree with two nodes (one up, with facts), a published image, the gateway and switch set."""
    root = tmp_path_factory.mktemp("scratch")
    shutil.copytree(REPO / "etc-kestrel", root / "etc" / "kestrel")
    tree = Sysroot(root)
    config = tree.path("/etc/kestrel/kestrel.yaml")
    text = config.read_text().replace("modules: [core, nfsroot, sshd, openmpi]", "")
    config.write_text(text + SCRATCH_CONFIG)
    for i in (1, 2):
        proc = kestrel("nodes", root, "add", "--mac", f"52:54:00:aa:bb:0{i}")
        assert proc.returncode == 0, proc.stderr
    publish_fake_image(tree, "default", "1")
    state = nodestate.NodeState(nodestate.State.UP, 1795000000, 2, 3000, "/srv/kestrel/images/default.versions/1")
    atomic_write(tree.path(nodestate.STATE_PATH), nodestate.format_states({"52:54:00:aa:bb:01": state}))
    vm = definitions.new_spec(Config(), "vm1")
    tree.path(definitions.VMS_DIR).mkdir(parents=True)
    tree.path(f"{definitions.VMS_DIR}/vm1.json").write_text(json.dumps(dataclasses.asdict(vm)))
    tree.path("/root/.ssh").mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tree.path("/root/.ssh/id_ed25519"))], check=True
    )
    return tree


@pytest.mark.parametrize("run", sorted(RUNS))
def test_json_output_speaks_the_vocabulary(scratch: Sysroot, run: str) -> None:
    program, _, _ = run.partition(" ")
    proc = kestrel(MODULES[program].rsplit(".", 1)[-1], scratch.root, *RUNS[run], "--json")
    assert proc.stdout, proc.stderr  # checks that fail (doctor, check here) still print their JSON
    assert list(vocabulary.problems(json.loads(proc.stdout))) == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([{"name": "n", "last_seen": 1795000000}], "$[0].last_seen: 1795000000 is not an ISO-8601 UTC time"),
        ({"built": "2026-12-02T14:53:38.123456+00:00"}, "$.built: '2026-12-02T14:53:38.123456+00:00' is not an"),
        ({"name": "n", "memory_mb": 3}, "$.memory_mb: say it in bytes (*_bytes) or seconds (*_seconds)"),
        ({"name": "n", "memory": 1024}, "$.memory: say it in bytes (*_bytes) or seconds (*_seconds)"),
        ({"size": "3 GiB"}, "$.size: '3 GiB' is not a number of bytes"),
        ({"node": "node01", "ok": True}, "$: the record's own name is `name`, not 'node'"),
        ({"Name": "x"}, "$.Name: a key is lowercase snake_case"),
        ({"name": "x", "note": ["2026-12-02 14:53"]}, "$.note[0]: '2026-12-02 14:53' is a time but not ISO-8601"),
        ({"uptime_seconds": -1}, "$.uptime_seconds: -1 is not a number of seconds"),
    ],
)
def test_vocabulary_names_what_is_wrong(data: Any, problem: str) -> None:
    [found] = vocabulary.problems(data)
    assert found.startswith(problem)


def test_iso_utc() -> None:
    assert vocabulary.iso_utc(1795000000) == "2026-11-18T11:06:40Z"
    assert vocabulary.iso_utc("2026-12-02T15:53:38.5+01:00") == "2026-12-02T14:53:38Z"
    assert vocabulary.iso_utc("2026-12-02T14:53:38") == "2026-12-02T14:53:38Z"
    assert vocabulary.iso_utc(None) is None
