"""Benchmark: the gateway module with each engine (HAProxy, nginx) over 3 web nodes in network namespaces.

Run as root: .venv/bin/python bench/bench_gateway.py [--rounds 3] [--seconds 5] [--engines haproxy,nginx]
Per engine, in the same run: the time from `kestrel-nodes add` (in process) until a new node answers through the
gateway; the time from stopping a node's nginx until the gateway marks it down (HAProxy's active checks; nginx has
only passive ones, so it has no such moment) and the failed requests of a request loop meanwhile; requests per
second through the gateway vs straight to one node (wrk, 2 threads, 16 connections, in the frontend's namespace).
Client, gateway and nodes share this machine's cores; figures are medians of the rounds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kestrel import runner  # noqa: E402
from tests.gatewaynodes import URL, Gateway, fetch, fetch_for, gateway_lab, nodes_of  # noqa: E402

DIRECT = "http://10.10.0.11/"  # node01, straight


def wrk(ns: str, url: str, seconds: int) -> tuple[float, int]:
    """(requests per second, failed requests) of wrk against URL from inside NS."""
    argv = ["wrk", "-t2", "-c16", f"-d{seconds}s", url]
    out = runner.run(runner.netns_argv(ns, argv), timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout|connect|read|write):? (\d+)", out))
    if rate is None:
        raise SystemExit(f"wrk said: {out}")
    return float(rate.group(1)), errors


def until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> float | None:
    """Seconds until PREDICATE() holds, None if not within TIMEOUT."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def include_time(gw: Gateway) -> float | None:
    node = gw.nodes.start(4) if not gw.nodes.running(4) else gw.nodes.node(4)
    start = time.monotonic()
    gw.register(node)
    took = until(lambda: "node04" in nodes_of(fetch(gw.ns, URL, 3)), 10)
    seen = None if took is None else time.monotonic() - start
    gw.remove("node04")
    until(lambda: "node04" not in nodes_of(fetch(gw.ns, URL, 6)), 10)
    return seen


def drop_time(gw: Gateway) -> tuple[float | None, int, int]:
    """(seconds until marked down, failed requests, requests) while node02's server stops; then it starts again."""
    with ThreadPoolExecutor(1) as pool:
        loop = pool.submit(fetch_for, gw.ns, URL, 4.0)
        time.sleep(0.5)
        gw.nodes.stop(2)
        took = until(lambda: gw.health("node02") == "DOWN", 3.5) if gw.service == "haproxy" else None
        answers = loop.result()
    gw.nodes.start(2)
    until(lambda: "node02" in nodes_of(fetch(gw.ns, URL, 6)), 10)
    return took, sum(a.status != 200 for a in answers), len(answers)


def bench_engine(engine: str, rounds: int, seconds: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp, gateway_lab(Path(tmp), engine) as gw:
        for index in (1, 2, 3):
            gw.register(gw.nodes.start(index))
        until(lambda: {"node01", "node02", "node03"} <= nodes_of(fetch(gw.ns, URL, 6)), 10)
        includes: list[float | None] = []
        drops: list[float | None] = []
        through: list[float] = []
        direct: list[float] = []
        errors = tried = wrk_errors = 0
        for _ in range(rounds):
            includes.append(include_time(gw))
            took, failed, count = drop_time(gw)
            drops.append(took)
            errors, tried = errors + failed, tried + count
            for url, into in ((URL, through), (DIRECT, direct)):  # interleaved: load from others hits both alike
                rate, bad = wrk(gw.ns, url, seconds)
                into.append(rate)
                wrk_errors += bad
    return {
        "engine": engine,
        "include s": _median(includes),
        "drop s": _median(drops) if engine == "haproxy" else "passive",
        "errors in drop": f"{errors}/{tried}",
        "req/s gateway": f"{statistics.median(through):.0f}",
        "req/s one node": f"{statistics.median(direct):.0f}",
        "ratio": f"{statistics.median(through) / statistics.median(direct):.2f}",
        "wrk errors": str(wrk_errors),
    }


def _median(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    text = f"{statistics.median(known):.2f}" if known else "-"
    return text + (f" ({len(values) - len(known)} never)" if len(known) < len(values) else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="wrk's duration per measurement")
    ap.add_argument("--engines", default="haproxy,nginx")
    args = ap.parse_args()
    rows = [bench_engine(e, args.rounds, args.seconds) for e in args.engines.split(",")]
    print(f"gateway over 3 namespaced web nodes, median of {args.rounds} rounds (wrk -t2 -c16 -d{args.seconds}s)")
    columns = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(r[c].ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
