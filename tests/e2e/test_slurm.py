"""The slurm module in the booted lab: nodes join by themselves, and the munge key is on the nodes' tmpfs but in no
exported image."""

from __future__ import annotations

from pathlib import Path

from kestrel.sysroot import Sysroot
from tests.e2e.lab import NODES, ROOT, on, wait_states


def test_both_nodes_idle_after_up_without_a_hand_edit(lab: str) -> None:
    # `kestrel-lab up` joined them right after SSH was ready: idle within 60 s of that, slurmctld never restarted.
    waited = wait_states(dict.fromkeys(NODES, "idle"), 60)
    print(f"both nodes idle {waited:.1f} s after kestrel-lab up returned")
    for node in NODES:
        assert f"{node}: joined Slurm (CPUs=" in lab or f"{node}: in Slurm (CPUs=" in lab, lab
    assert "Running as primary controller" in (ROOT / "var/log/slurm/slurmctld.log").read_text()


def test_munge_key_on_the_nodes_but_in_no_image(lab: str) -> None:
    key = (ROOT / "etc/munge/munge.key").read_bytes()
    for node in NODES:
        assert on(node, "stat -c '%a %U' /etc/munge/munge.key") == f"{node}: 400 munge\n"
    images = Sysroot(ROOT).path("/srv/kestrel/images")
    found = []
    for path in images.rglob("*"):
        if path.name == "munge.key" or (path.is_file() and not path.is_symlink() and path.stat().st_size == len(key)):
            if path.name == "munge.key" or path.read_bytes() == key:
                found.append(str(path))
    assert found == [], found
    assert not list(Path(ROOT / "srv/kestrel/http").rglob("munge.key"))
