"""What the gateway says about its backends: HAProxy's stats socket (active health, requests per server), or
for nginx, which has no active checks, the requests and failures its access log records per backend."""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from kestrel.config import Config, GatewayEngine
from kestrel.errors import CommandError
from kestrel.gateway.backends import Backend
from kestrel.gateway.files import BACKEND_NAME, NGINX_LOG, STATS_SOCKET
from kestrel.sysroot import Sysroot


@dataclass(frozen=True)
class BackendStatus:
    node: str
    address: str
    health: str  # haproxy: UP, DOWN, MAINT, ...; nginx: ok / failing / unused (passive: what the last try said)
    requests: int  # requests this backend answered (haproxy: since its last reload)
    errors: int  # failed connections or answers (retried on another backend)
    detail: str  # haproxy: the last health check; nginx: that open-source nginx checks passively only

    def row(self) -> dict[str, object]:
        """In the JSON vocabulary: the backend node's name is `name`."""
        fields = asdict(self)
        return {"name": fields.pop("node"), **fields}


def gateway_status(root: Sysroot, config: Config, backends: list[Backend]) -> list[BackendStatus]:
    """One row per backend the config lists (the registry's group, not down), in that order."""
    if config.gateway.engine is GatewayEngine.HAPROXY:
        return _from_haproxy(backends, query_haproxy(root.path(STATS_SOCKET), "show stat"))
    log = root.path(NGINX_LOG)
    return _from_nginx_log(backends, log.read_text(errors="replace") if log.exists() else "")


def query_haproxy(path: Path, command: str, timeout: float = 5.0) -> str:
    """COMMAND's answer on HAProxy's stats socket (a Unix socket: no network namespace needed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise CommandError(f"haproxy does not answer on {path}: is the gateway running?") from None
    except OSError as e:
        raise CommandError(f"{path}: cannot read haproxy's stats ({e.strerror or e})") from None
    return b"".join(chunks).decode(errors="replace")


def parse_stats(text: str) -> dict[str, dict[str, str]]:
    """`show stat` CSV -> {server name: its fields} for the servers of Kestrel's backend."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    return {
        row["svname"]: row
        for row in reader
        if row.get("pxname") == BACKEND_NAME and row.get("svname") not in ("FRONTEND", "BACKEND")
    }


def _from_haproxy(backends: list[Backend], stats_text: str) -> list[BackendStatus]:
    stats = parse_stats(stats_text)
    out = []
    for b in backends:
        row = stats.get(b.name)
        if row is None:
            out.append(BackendStatus(b.name, f"{b.ip}:{b.port}", "not loaded", 0, 0, "haproxy has not reloaded yet"))
            continue
        requests = _int(row.get("req_tot")) or _int(row.get("stot"))
        errors = _int(row.get("econ")) + _int(row.get("eresp"))
        check = " ".join(x for x in (row.get("check_status", ""), row.get("check_code", "")) if x)
        out.append(
            BackendStatus(
                b.name,
                row.get("addr") or f"{b.ip}:{b.port}",
                row.get("status", "?"),
                requests,
                errors,
                f"check {check}".strip(),
            )
        )
    return out


def _from_nginx_log(backends: list[Backend], log: str) -> list[BackendStatus]:
    """Per backend address: answers, failed tries and what the last try said (the log's $upstream_addr and
    $upstream_status list every try of a request, a retry after a failure included)."""
    served: dict[str, int] = {}
    failed: dict[str, int] = {}
    last: dict[str, bool] = {}
    for line in log.splitlines():
        for address, status in _tries(line):
            ok = status.isdigit() and int(status) < 500
            (served if ok else failed)[address] = (served if ok else failed).get(address, 0) + 1
            last[address] = ok
    out = []
    for b in backends:
        address = f"{b.ip}:{b.port}"
        health = "unused" if address not in last else ("ok" if last[address] else "failing")
        out.append(
            BackendStatus(
                b.name, address, health, served.get(address, 0), failed.get(address, 0), "nginx: passive checks only"
            )
        )
    return out


def _tries(line: str) -> list[tuple[str, str]]:
    """[(backend address, its status)] of one access log line: `TIME STATUS "ADDR, ADDR" "502, 200" SECONDS`."""
    parts = line.split('"')
    if len(parts) < 5:
        return []
    addresses = [a.strip() for a in parts[1].replace(" : ", ", ").split(",")]
    statuses = [s.strip() for s in parts[3].replace(" : ", ", ").split(",")]
    return [(a, s) for a, s in zip(addresses, statuses, strict=False) if a and a != "-"]


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0
