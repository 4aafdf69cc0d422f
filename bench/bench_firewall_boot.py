"""Benchmark: power-on to SSH-ready of a lab qemu node with the firewall module on (no host private key in the
image: a boot key, then the image's keys pushed over SSH) and off, in the same run.

Run as root, under the qemu lock: flock /work/locks/qemu.lock .venv/bin/python bench/bench_firewall_boot.py
[--root DIR] [--rounds N]. The lab tree (default /var/lib/kestrel-lab-bench-fw) is brought up with the module,
then per round: the image built for the mode (its host keys differ), the frontend reconfigured (the table
loaded or removed), node01 stopped and started, timed to a pinned SSH login. The lab goes down at the end.
Goal (issue 16): on no more than 2 s slower than off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kestrel import runner  # noqa: E402
from kestrel.config import CONFIG_PATH, load_config  # noqa: E402
from kestrel.frontend.reconfigure import reconfigure_frontend  # noqa: E402
from kestrel.lab import cluster as lab  # noqa: E402
from kestrel.sysroot import Sysroot  # noqa: E402
from kestrel.vm import definitions as vm_definitions  # noqa: E402
from kestrel.vm import power  # noqa: E402


def set_module(root: Sysroot, on: bool) -> None:
    path = root.path(CONFIG_PATH)
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("modules:"):
            body = line.split("[", 1)[1].split("]", 1)[0]
            names = [n.strip() for n in body.split(",") if n.strip() and n.strip() != "firewall"]
            lines[i] = f"modules: [{', '.join([*names, 'firewall'] if on else names)}]\n"
    path.write_text("".join(lines))


def boot(root: Sysroot, on: bool) -> tuple[float | None, float]:
    """Seconds from power-on to the login prompt (None: SSH answered first) and to a pinned SSH login, for one
    boot of node01."""
    set_module(root, on)
    config_path = root.path(CONFIG_PATH)
    argv = runner.kestrel_argv("images", "--root", str(root.root), "--config", str(config_path), "build", "default")
    runner.run(argv, timeout=3600)
    reconfigure_frontend(root, load_config(config_path), config_path)
    if root.path(f"{vm_definitions.VMS_DIR}/node01.json").exists():
        power.stop(root, "node01")
    [p] = lab.up(root, 1, None, None, timeout=900)
    if p.ssh is None:
        raise SystemExit("node01 did not come up")
    return p.booted, p.ssh


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", default="/var/lib/kestrel-lab-bench-fw")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Sysroot(args.root)
    times: dict[bool, list[tuple[float | None, float]]] = {True: [], False: []}
    try:
        lab.up(root, 0, None, "kt-bfb", modules=["firewall"])
        for _ in range(args.rounds):
            for on in (False, True):
                times[on].append(boot(root, on))
    finally:
        lab.down(root)
    print(f"{'case':<32} {'login s':>8} {'SSH s':>7}  samples")  # noqa: T201
    for on in (False, True):
        found = times[on]
        if found:
            logins = [b for b, _ in found if b is not None]
            login = f"{statistics.median(logins):.1f}" if logins else "-"
            ssh_ready = statistics.median(s for _, s in found)
            name = "module on" if on else "module off (baseline)"
            print(f"{name:<32} {login:>8} {ssh_ready:>7.1f}  {len(found)}")  # noqa: T201
    if times[True] and times[False]:
        slower = statistics.median(s for _, s in times[True]) - statistics.median(s for _, s in times[False])
        print(f"on - off (SSH-ready): {slower:+.1f} s; goal: at most +2 s")  # noqa: T201


if __name__ == "__main__":
    main()
