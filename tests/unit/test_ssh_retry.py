"""A sshd that drops the handshake (restarting after boot, out of unauthenticated slots) is asked again; a real
sshd that never comes up is not waited for twice. Loopback only: a listener that closes what it accepts."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from kestrel.nodes import ssh


@pytest.fixture
def dropping() -> Iterator[tuple[int, list[float]]]:
    """A loopback port whose every connection is closed at once; the times they came."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    came: list[float] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            came.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], came
    stop.set()
    thread.join(5)
    server.close()


def test_a_dropped_handshake_is_tried_three_times_then_reported(
    dropping: tuple[int, list[float]], tmp_path: Path
) -> None:
    port, came = dropping
    key = tmp_path / "key"
    subprocess.run(ssh.keygen_argv(str(key), "test"), check=True, capture_output=True)
    pool = ssh.Pool("root", key, [], 5.0)
    started = time.monotonic()
    with pytest.raises((paramiko.SSHException, EOFError, ConnectionResetError)), pool:
        pool.client(ssh.Target("n1", "127.0.0.1", port))
    assert len(came) == 3, came
    assert 1.4 < time.monotonic() - started < 5, "paused 0.5 s and 1 s between the tries"
