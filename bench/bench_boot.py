"""Boot benchmarks on a lab: power-on to SSH-ready by iPXE/HTTP, pxelinux/TFTP and direct kernel boot (same
NFS root), with the timeline of each iPXE/HTTP boot (kestrel.nodes.boottimeline), and a boot storm of N
clients fetching kernel+initrd at once over HTTP (nginx) vs TFTP (dnsmasq).

Run as root: .venv/bin/python bench/bench_boot.py [--root DIR] [--rounds N] [--clients 32] [--skip-boot] [--skip-storm]
The lab tree (default /var/lib/kestrel-lab-bench) is brought up with no nodes if it is not up, and down again
at the end. Everything runs in kt- namespaces that are removed, also on failure.
"""

from __future__ import annotations

import argparse
import io
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ruamel.yaml import YAML

from kestrel import runner
from kestrel.config import CONFIG_PATH, Config, load_config
from kestrel.frontend import node_changes
from kestrel.frontend.desired import HTTP_ROOT, TFTP_ROOT, http_url, kernel_cmdline
from kestrel.frontend.reconfigure import reconfigure_frontend
from kestrel.images import store
from kestrel.lab import cluster as lab
from kestrel.lab import tree
from kestrel.net import netns
from kestrel.net.netns import Topology
from kestrel.nodes import boottimeline, registry, ssh
from kestrel.sysroot import Sysroot
from kestrel.vm import definitions as vm_definitions
from kestrel.vm import power, qemu

BOOT_TIMEOUT = 420.0


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def set_boot_method(root: Sysroot, method: str) -> Config:
    path = root.path(CONFIG_PATH)
    yaml = YAML(typ="rt")
    data = yaml.load(path.read_text())
    data["boot"]["method"] = method
    out = io.StringIO()
    yaml.dump(data, out)
    path.write_text(out.getvalue())
    config = load_config(path)
    reconfigure_frontend(root, config, path)
    return config


def boot_once(root: Sysroot, config: Config, name: str, direct: bool) -> dict[str, object]:
    """Start one VM, return seconds to its login prompt and SSH-ready, and its timeline; stop it."""
    extra: dict[str, object] = {}
    if direct:
        image = store.published_images(root)[0]
        assert image.kernel and image.initrd
        extra = {
            "kernel": str(root.path(f"{HTTP_ROOT}/{image.kernel}")),
            "initrd": str(root.path(f"{HTTP_ROOT}/{image.initrd}")),
            "append": kernel_cmdline(root, config, image),
        }
    spec = vm_definitions.define_vm(root, config, name, **extra)
    # A registered node, as at every power-on after the first: iPXE goes straight to its image's script.
    if not any(n.mac == spec.mac for n in registry.load_registry(root)):
        node_changes.add(root, config, spec.mac)
    console = qemu.console_path(root, name)
    offset = console.stat().st_size if console.exists() else 0  # the console file is appended to by every boot
    marks = boottimeline.ConsoleMarks()
    start = time.monotonic()
    qemu.start_vm(root, spec)
    result: dict[str, object] = {"login": None, "ssh": None}
    try:
        with open(console, "rb") as log, ssh.root_pool(root, config.nodes.ssh_key, 10.0, config.network.netns) as pool:
            log.seek(offset)
            while time.monotonic() - start < BOOT_TIMEOUT:
                elapsed = time.monotonic() - start
                marks.feed(log.read().decode(errors="replace"), elapsed)
                if result["login"] is None and power.booted(root, name):
                    result["login"] = elapsed
                node = next((n for n in registry.load_registry(root) if n.mac == spec.mac), None)
                target = ssh.Target(str(node.ip), str(node.ip)) if node else None
                if target and elapsed > 20 and runner.run(["true"], via=pool.on(target), timeout=20, check=False).ok:
                    ready = time.monotonic() - start
                    result["ssh"] = ready
                    times, read_at = node_times(pool, target, start)
                    result["timeline"] = boottimeline.timeline(marks, times, ready, read_at)
                    result["lost_tries"] = marks.lost_tries
                    break
                time.sleep(0.2 if target is None else 1)
    finally:
        power.remove(root, name)
    return result


def node_times(pool: ssh.Pool, target: ssh.Target, start: float) -> tuple[boottimeline.NodeTimes | None, float]:
    """The node's own boot timestamps, once sshd is active (at most 60 s after SSH answers), and when (seconds
    since power-on) they were read."""
    deadline = time.monotonic() + 60
    while True:
        asked = time.monotonic()
        out = runner.run([boottimeline.NODE_COMMAND], via=pool.on(target), timeout=30, check=False).stdout
        read_at = (asked + time.monotonic()) / 2 - start
        found = boottimeline.parse_node(out)
        if (found and found.sshd) or time.monotonic() > deadline:
            return found, read_at
        time.sleep(2)


def print_timelines(runs: list[dict[str, object]]) -> None:
    """Per boot, where its time went (the iPXE + HTTP path)."""
    print("\nTimeline of each iPXE + HTTP boot, seconds (console marks, the node's systemd timestamps)")
    print(f"{'phase':<38}" + "".join(f"{'boot ' + str(i + 1):>9}" for i in range(len(runs))))
    for phase in boottimeline.PHASES:
        cells = []
        for r in runs:
            phases = r.get("timeline")
            value = phases.get(phase) if isinstance(phases, dict) else None
            cells.append(f"{value:>9.1f}" if isinstance(value, float) else f"{'-':>9}")
        print(f"{phase:<38}" + "".join(cells))
    print(f"{'power-on to SSH ready':<38}" + "".join(f"{_s(r['ssh']):>9}" for r in runs))
    print(f"{'initramfs DHCP tries lost':<38}" + "".join(f"{r.get('lost_tries', '-')!s:>9}" for r in runs))


BOOT_PATHS = (
    ("iPXE + HTTP", "ipxe-http", False),
    ("pxelinux + TFTP", "pxelinux", False),
    ("direct kernel boot", "ipxe-http", True),
)


def bench_boots(root: Sysroot, rounds: int) -> dict[str, list[dict[str, object]]]:
    """ROUNDS interleaved rounds of one boot per path, so a slow spell of the machine hits every path."""
    found: dict[str, list[dict[str, object]]] = {label: [] for label, _, _ in BOOT_PATHS}
    for n in range(1, rounds + 1):
        for label, method, direct in BOOT_PATHS:
            config = set_boot_method(root, method)
            say(f"Round {n}: booting one node by {label} ...")
            found[label].append(boot_once(root, config, f"bench-{method}-{int(direct)}", direct))
            say(f"  {found[label][-1]}")
    set_boot_method(root, "ipxe-http")
    return found


def _median(values: list[object]) -> float | None:
    numbers = [v for v in values if isinstance(v, float)]
    return statistics.median(numbers) if len(numbers) == len(values) and numbers else None


def bench_storm(root: Sysroot, config: Config, clients: int) -> list[tuple[str, float, int]]:
    """CLIENTS namespaces on the lab bridge fetch kernel+initrd at once; (protocol, wall seconds, bytes)."""
    image = store.published_images(root)[0]
    assert image.kernel and image.initrd
    files = [image.kernel, image.initrd]
    size = sum(root.path(f"{HTTP_ROOT}/{f}").stat().st_size for f in files)
    topo = Topology(f"kt-{secrets.token_hex(2)[:3]}")
    ns_lab, bridge = config.network.netns, config.network.interface
    assert ns_lab
    out = []
    try:
        spaces = []
        for i in range(clients):
            ns = topo.add_netns(f"c{i}")
            topo.add_veth(ns_lab, f"v{i}", ns, "e0", master_a=bridge, address_b=f"10.10.0.{20 + i}/24")
            spaces.append(ns)
        tftp = f"tftp://{config.network.ip}"
        for proto, base, extra in (
            ("HTTP (nginx)", http_url(config), []),
            ("TFTP (dnsmasq, blksize 1408)", tftp, ["--tftp-blksize", "1408"]),
        ):

            def fetch(ns: str, base: str = base, extra: list[str] = extra) -> int:
                got = 0
                for f in files:
                    proc = runner.run(
                        [
                            "curl",
                            "-sS",
                            "--max-time",
                            "600",
                            *extra,
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{size_download}",
                            f"{base}/{f}",
                        ],
                        via=runner.Netns(ns),
                        timeout=650,
                    )
                    got += int(proc.stdout)
                return got

            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                total = sum(pool.map(fetch, spaces))
            wall = time.monotonic() - start
            assert total == size * clients, (total, size * clients)
            out.append((proto, wall, total))
            say(f"  {proto}: {clients} clients, {total / 1e6:.0f} MB in {wall:.1f} s")
    finally:
        topo.destroy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/var/lib/kestrel-lab-bench")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--skip-boot", action="store_true")
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="boots per path, interleaved (default 1)")
    parser.add_argument("--rebuild", action="store_true", help="Update the image first (kestrel-images build).")
    args = parser.parse_args()
    root = Sysroot(args.root)
    state = tree.load_state(root)
    was_up = bool(state and all(netns.exists(n) for n in state.namespaces))
    try:
        lab.up(root, 0, None, None if state else f"kt-{secrets.token_hex(2)[:3]}", rebuild=args.rebuild)
        config = load_config(root.path(CONFIG_PATH))
        tftp_size = sum(
            Path(root.path(f"{TFTP_ROOT}/{f}")).stat().st_size
            for i in store.published_images(root)[:1]
            for f in (i.kernel or "", i.initrd or "")
        )
        say(f"kernel + initrd: {tftp_size / 1e6:.1f} MB")
        if not args.skip_boot:
            boots = bench_boots(root, args.rounds)
            direct = _median([r["ssh"] for r in boots["direct kernel boot"]])
            print(f"\nPower-on to SSH-ready, one node, qemu TCG (1 vCPU, 1 GiB); median of {args.rounds} round(s)")
            print(f"{'boot path':<22}{'login prompt':>14}{'SSH ready':>12}{'vs direct':>11}  rounds")
            for label, runs in boots.items():
                ssh = _median([r["ssh"] for r in runs])
                ratio = f"{ssh / direct:.2f}x" if ssh is not None and direct is not None else "-"
                each = " ".join(_s(r["ssh"]) for r in runs)
                print(f"{label:<22}{_s(_median([r['login'] for r in runs])):>14}{_s(ssh):>12}{ratio:>11}  {each}")
            print_timelines(boots["iPXE + HTTP"])
        if not args.skip_storm:
            storm = bench_storm(root, config, args.clients)
            print(f"\nBoot storm: {args.clients} clients fetch kernel + initrd at once")
            print(f"{'protocol':<30}{'wall':>9}{'aggregate':>14}")
            for proto, wall, total in storm:
                print(f"{proto:<30}{wall:>8.1f}s{total / wall / 1e6:>10.1f} MB/s")
            print(f"HTTP / TFTP aggregate throughput: {storm[1][1] / storm[0][1]:.1f}x")
    finally:
        if not was_up:
            lab.down(root)


def _s(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, float) else "-"


if __name__ == "__main__":
    main()
