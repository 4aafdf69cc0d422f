"""SSH to nodes with paramiko: a pool of reused connections (known_hosts pinned), On (the runner's Via for a
node) and a bounded fan-out."""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from kestrel import runner
from kestrel.errors import KestrelError
from kestrel.net import netns
from kestrel.nodes import knownhosts
from kestrel.sysroot import Sysroot

# The frontend's root key: images authorise its public half for root on the nodes (KestrelHPC's rule).
ROOT_KEY = "/root/.ssh/id_ed25519"
_RETRY_PAUSES = (0.5, 1.0)  # seconds before asking again a sshd that dropped the handshake
KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
USER_KNOWN_HOSTS = "/root/.ssh/known_hosts"

# Never paramiko's own lines on stderr (a failed connection is the caller's one-line error); output.setup routes
# them to Kestrel's handler with -vv.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class RemoteError(KestrelError):
    """A node could not be reached, refused the key, or did not answer in time."""


def keygen_argv(key: str, comment: str) -> list[str]:
    """ssh-keygen making the ed25519 key pair KEY and KEY.pub, without a passphrase."""
    return ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key]


def load_key(path: Path) -> paramiko.PKey:
    """The frontend's private key (any type paramiko reads); RemoteError with the path if it cannot."""
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise RemoteError(f"{path}: no such SSH key; create it with ssh-keygen -t ed25519 -N '' -f {path}") from None
    except (paramiko.SSHException, OSError, ValueError) as e:
        raise RemoteError(f"{path}: cannot read the SSH key ({e})") from None


def open_socket(address: str, port: int, timeout: float, netns_name: str | None) -> socket.socket | None:
    """A TCP connection opened inside network namespace NETNS_NAME (the lab's cluster network), or None
    without one (paramiko then connects by itself)."""
    if netns_name is None:
        return None
    return netns.call_in(netns_name, socket.create_connection, (address, port), timeout)


@dataclass(frozen=True)
class Target:
    """A host to reach: its name (for output and host-key lookup) and the address to connect to."""

    name: str
    address: str
    port: int = 22

    @property
    def lookup_names(self) -> list[str]:
        """Names its host key may be listed under in known_hosts (OpenSSH writes [host]:port off port 22)."""
        hosts = [self.name, self.address]
        return hosts if self.port == 22 else [f"[{h}]:{self.port}" for h in hosts]


class HostKeyRefused(paramiko.SSHException):
    """The node showed a host key that known_hosts does not list for it."""


class _TrustKnownHosts(paramiko.MissingHostKeyPolicy):
    """Accept a server key only if Kestrel's known_hosts lists it for the target: never trust on first use.

    The client loads no host keys itself, so every connection comes here; this also gives OpenSSH
    patterns ('node*', '10.10.0.*', '!frontend'), which paramiko's own lookup does not understand.
    """

    def __init__(
        self, entries: list[knownhosts.Entry], target: Target, vouch: Callable[[Target], bool] | None = None
    ) -> None:
        self.entries = entries
        self.target = target
        self.vouch = vouch

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if listed(self.entries, self.target, key):
            return
        if self.vouch is None or not self.vouch(self.target):
            raise HostKeyRefused(
                f"host key {key.get_name()} {key.fingerprint} is not listed for {self.target.name} in known_hosts"
            )


def listed(entries: list[knownhosts.Entry], target: Target, key: paramiko.PKey) -> bool:
    """Whether ENTRIES list KEY for TARGET (its name, its address, OpenSSH patterns)."""
    offered = knownhosts.HostKey(key.get_name(), key.get_base64())
    return knownhosts.is_trusted(entries, target.lookup_names, offered)


class Pool:
    """Open SSH connections by host, reused by every later command through this pool. Thread-safe."""

    def __init__(
        self,
        user: str,
        key: Path,
        known_hosts: Iterable[Path],
        connect_timeout: float = 5.0,
        netns_name: str | None = None,
        trusted: Iterable[knownhosts.Entry] = (),
        vouch: Callable[[Target], bool] | None = None,
    ) -> None:
        """Host keys are trusted if TRUSTED or one of the KNOWN_HOSTS files lists them; never on first use, but
        where VOUCH(target) says the host is the one meant by other means (the delivery of host keys to a
        node that has only its boot key: hostkeys)."""
        self.vouch = vouch
        self.user = user
        self.netns_name = netns_name
        self.connect_timeout = connect_timeout
        self.key = load_key(key)
        self.entries: list[knownhosts.Entry] = list(trusted)
        for path in known_hosts:
            if path.is_file():
                self.entries += knownhosts.parse(path.read_text(errors="replace"))
        self._clients: dict[Target, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    def client(self, target: Target) -> paramiko.SSHClient:
        with self._lock:
            have = self._clients.get(target)
        transport = have.get_transport() if have else None
        if have and transport and transport.is_active():
            return have
        for pause in (*_RETRY_PAUSES, None):
            started = time.monotonic()
            try:
                client = self._connect(target)
                break
            except (EOFError, ConnectionResetError, paramiko.SSHException) as e:
                # sshd that closes a connection during the handshake (restarting after boot, or briefly out of
                # unauthenticated slots) is asked again; a refused key or host key, a timeout, is not.
                quick = time.monotonic() - started < self.connect_timeout / 2
                if pause is None or not quick or isinstance(e, (paramiko.AuthenticationException, HostKeyRefused)):
                    raise
                time.sleep(pause)
        with self._lock:
            self._clients[target] = client
        return client

    def _connect(self, target: Target) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_TrustKnownHosts(self.entries, target, self.vouch))
        t = self.connect_timeout
        try:
            client.connect(
                target.address,
                target.port,
                username=self.user,
                pkey=self.key,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                look_for_keys=False,
                allow_agent=False,
                sock=open_socket(target.address, target.port, t, self.netns_name),
            )
        except BaseException:
            # paramiko leaves the connection open after a refused host key or key: closed here, or each failed
            # attempt would hold one of sshd's unauthenticated slots (MaxStartups) until its LoginGraceTime
            client.close()
            raise
        return client

    def reach(self, target: Target) -> tuple[str, bool] | None:
        """Connect to TARGET (kept for the next commands): None, or why not and whether asking again later may
        help (a node too busy to finish the handshake in time, sshd restarting; not a refused key or host key)."""
        try:
            self.client(target)
        except (paramiko.AuthenticationException, HostKeyRefused) as e:
            return describe_error(e, self), False
        except (OSError, paramiko.SSHException, EOFError) as e:
            return describe_error(e, self), True
        return None

    def shows_listed_key(self, target: Target) -> bool:
        """Whether TARGET's sshd shows a host key known_hosts lists for it (not one only VOUCH let through); False
        if it cannot be reached."""
        try:
            transport = self.client(target).get_transport()
        except (OSError, paramiko.SSHException, EOFError):
            return False
        key = transport.get_remote_server_key() if transport else None
        return key is not None and listed(self.entries, target, key)

    def holds(self, target: Target) -> bool:
        """Whether a connection to TARGET is kept (it may have died since)."""
        with self._lock:
            return target in self._clients

    def on(self, target: Target) -> On:
        """The Via that runs commands on TARGET through this pool."""
        return On(self, target)

    def drop(self, target: Target) -> None:
        with self._lock:
            client = self._clients.pop(target, None)
        if client:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def known_hosts_files(root: Sysroot) -> list[Path]:
    """Kestrel's system-wide known_hosts, then root's own."""
    return [root.path(KNOWN_HOSTS), root.path(USER_KNOWN_HOSTS)]


def root_pool(
    root: Sysroot,
    key: str = ROOT_KEY,
    connect_timeout: float = 5.0,
    netns_name: str | None = None,
    trusted: Iterable[knownhosts.Entry] = (),
    vouch: Callable[[Target], bool] | None = None,
) -> Pool:
    """Connections as root with the frontend's key (config nodes.ssh_key)."""
    return Pool("root", root.path(key), known_hosts_files(root), connect_timeout, netns_name, trusted, vouch)


@dataclass(frozen=True)
class On:
    """Runs commands on TARGET (a runner.Via): runner.run([command], via=pool.on(target)). As with ssh(1),
    the words of the command are joined by spaces and read by the remote user's shell (`kestrel-nodes exec
    -- echo '$HOME'` expands on the node). A connection failure is the result's error, never an exception."""

    pool: Pool
    target: Target

    @property
    def where(self) -> str:
        return f"on {self.target.name}"

    def execute(self, argv: list[str], how: runner.How) -> runner.Ended:
        if how.env is not None or how.cwd is not None or how.output is not None or how.interactive:
            raise KestrelError("internal: SSH runs a command with no environment, folder, log file or terminal")
        try:
            chan = self._session(how.timeout)
            ended = _exec(chan, " ".join(argv), how.timeout, None if how.input is None else how.input.encode())
        except (OSError, paramiko.SSHException, EOFError) as e:
            ended = runner.Ended(None, error=describe_error(e, self.pool))
        if ended.returncode is None:
            self.pool.drop(self.target)
        return ended

    def _session(self, timeout: float | None) -> paramiko.Channel:
        """A channel to TARGET. A kept connection whose node rebooted since is only found dead here (the new
        boot resets it): no command started on it, so it is dropped and the node connected to again, once."""
        kept = self.pool.holds(self.target)
        try:
            return _open_session(self.pool.client(self.target), timeout)
        except (OSError, paramiko.SSHException, EOFError):
            if not kept:
                raise
            self.pool.drop(self.target)
            return _open_session(self.pool.client(self.target), timeout)


def _open_session(client: paramiko.SSHClient, timeout: float | None) -> paramiko.Channel:
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("not connected")
    return transport.open_session(timeout=timeout)


def _exec(chan: paramiko.Channel, command: str, timeout: float | None, input: bytes | None) -> runner.Ended:
    transport = chan.get_transport()
    try:
        chan.exec_command(command)
        if input is not None:
            chan.sendall(input)
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return runner.Ended(None, _text(out), _text(err), f"timed out after {timeout:g} s")
            select.select([chan], [], [], min(left, 1.0))
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                status = chan.recv_exit_status()
                if status == -1:  # no exit status: paramiko drops sshd's exit-signal, or the connection went
                    why = "killed by a signal" if transport.is_active() else "connection lost"
                    return runner.Ended(None, _text(out), _text(err), why)
                return runner.Ended(status, _text(out), _text(err))
    finally:
        chan.close()


def _text(data: bytearray) -> str:
    return data.decode(errors="replace")


def describe_error(e: BaseException, pool: Pool) -> str:
    """A connection failure as a short sentence."""
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError) and e.errors:
        return describe_error(next(iter(e.errors.values())), pool)
    if isinstance(e, paramiko.AuthenticationException):
        return f"key not accepted for {pool.user}"
    if isinstance(e, socket.timeout | TimeoutError):
        return f"no answer within {pool.connect_timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (sshd not running?)"
    if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    # paramiko's words when the key exchange or a session's opening outlasts the timeout
    if str(e) == "No existing session":
        return f"no SSH handshake within {pool.connect_timeout:g} s (sshd too busy?)"
    if str(e) == "Timeout opening channel.":
        return "connected, but no session opened in time (sshd too busy?)"
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
