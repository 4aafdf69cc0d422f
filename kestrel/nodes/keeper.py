"""The SSH keeper: one process per tree that keeps one connection per node open between Kestrel commands (as
OpenSSH's ControlPersist does) and runs their commands over it. A second `kestrel-nodes exec` then costs one
channel per node, not a TCP and SSH handshake, and the fan-out's threads live in a process that has imported
everything already. It ends after IDLE seconds without a request; only its own user can reach its socket.

Protocol: one JSON request line on ROOT/run/kestrel/ssh-keeper.sock (`Request`), one JSON line back: a list
of [returncode, stdout, stderr, error, seconds], one per target, in order.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.errors import KestrelError
from kestrel.nodes import ssh
from kestrel.sysroot import RUN_DIR, Sysroot

logger = logging.getLogger(__name__)

SOCKET = f"{RUN_DIR}/ssh-keeper.sock"
NAME = "ssh-keeper"  # its supervisor record
IDLE = 120.0
READY = "SSH keeper listening"
_MAX_REQUEST = 16 << 20


@dataclass(frozen=True)
class Request:
    user: str
    key: str  # the private key's real path
    known_hosts: list[str]  # real paths of the known_hosts files that pin host keys
    connect_timeout: float
    netns: str | None
    targets: list[tuple[str, str, int]]  # name, address, port
    command: str
    parallel: int
    timeout: float
    input: str = ""  # the command's standard input on every target


def run_kept(root: Sysroot, request: Request) -> list[runner.Result] | None:
    """REQUEST through the keeper of ROOT, started if it is not running; None if it cannot be used (then the
    caller connects by itself)."""
    if os.environ.get("KESTREL_SSH_KEEPER") == "off":
        return None
    try:
        conn = _connect(root) or _start(root)
        if conn is None:
            return None
        with conn:
            conn.sendall(json.dumps(asdict(request)).encode() + b"\n")
            answer = json.loads(_read_line(conn))
    except (OSError, ValueError, KestrelError) as e:
        logger.debug(f"SSH keeper not used: {e}")
        return None
    return [
        runner.Result([request.command], f"on {name}", code, out, err, error, seconds)
        for (name, _, _), (code, out, err, error, seconds) in zip(request.targets, answer, strict=True)
    ]


def _connect(root: Sysroot) -> socket.socket | None:
    path = root.path(SOCKET)
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    return conn


def _start(root: Sysroot) -> socket.socket | None:
    if supervisor.find(root, NAME) is None:
        record = supervisor.start(root, NAME, runner.kestrel_argv("nodes", "--root", str(root.root), "keeper"))
        if not supervisor.wait_for_log(record, READY, 30):
            supervisor.stop(root, NAME)
            return None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if conn := _connect(root):
            return conn
        time.sleep(0.05)
    return None


def _read_line(conn: socket.socket) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ValueError("the SSH keeper closed the connection")
        data += chunk
        if len(data) > _MAX_REQUEST:
            raise ValueError("request too long")
    return bytes(data)


# -- the keeper itself ----------------------------------------------------------------------------------


class _Keeper(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), _Handler)
        self.pools: dict[tuple[object, ...], ssh.Pool] = {}
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.busy = 0  # requests running: a command may outlast IDLE, and ending the keeper would cut it

    def pool(self, r: Request) -> ssh.Pool:
        """One pool per identity; a changed known_hosts file (a node or an image added) makes a new one."""
        stamps = tuple(_mtime(p) for p in r.known_hosts)
        key = (r.user, r.key, r.connect_timeout, r.netns, tuple(r.known_hosts), stamps)
        with self.lock:
            have = self.pools.get(key)
            if have is None:
                for old in [k for k in self.pools if k[:5] == key[:5]]:
                    self.pools.pop(old).close()
                have = ssh.Pool(r.user, Path(r.key), map(Path, r.known_hosts), r.connect_timeout, r.netns)
                self.pools[key] = have
            return have

    def close_all(self) -> None:
        with self.lock:
            for p in self.pools.values():
                p.close()
            self.pools.clear()


class _Handler(socketserver.StreamRequestHandler):
    server: _Keeper

    def handle(self) -> None:
        uid = struct.unpack("3i", self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            return
        self.server.last = time.monotonic()
        with self.server.lock:
            self.server.busy += 1
        try:
            r = Request(**json.loads(self.rfile.readline(_MAX_REQUEST)))
            results = _run(self.server.pool(r), r)
        except (ValueError, TypeError, KestrelError) as e:
            logger.warning(f"SSH keeper: bad request ({e})")
            return
        finally:
            with self.server.lock:
                self.server.busy -= 1
                self.server.last = time.monotonic()
        answer = [[x.returncode, x.stdout, x.stderr, x.error, x.seconds] for x in results]
        self.wfile.write(json.dumps(answer).encode() + b"\n")
        self.server.last = time.monotonic()


def _run(pool: ssh.Pool, r: Request) -> list[runner.Result]:
    targets: Sequence[ssh.Target] = [ssh.Target(name, address, port) for name, address, port in r.targets]

    def one(t: ssh.Target) -> runner.Result:
        return runner.run([r.command], via=pool.on(t), timeout=r.timeout, input=r.input or None, check=False)

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(r.parallel, len(targets)))) as workers:
        return list(workers.map(one, targets))


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def serve(root: Sysroot, idle: float = IDLE) -> None:
    """Keep connections and run commands for Kestrel's programs until IDLE seconds pass without a request."""
    path = root.path(SOCKET)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    old = os.umask(0o177)  # the socket is its user's only
    try:
        keeper = _Keeper(path)
    finally:
        os.umask(old)
    thread = threading.Thread(target=keeper.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    logger.info(f"{READY} on {path}")
    try:
        while keeper.busy or time.monotonic() - keeper.last < idle:
            time.sleep(1.0)
    finally:
        keeper.shutdown()
        keeper.server_close()
        path.unlink(missing_ok=True)
        keeper.close_all()
    logger.info(f"SSH keeper stopped after {idle:g} s without a request")
