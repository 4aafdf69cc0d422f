"""kestrel-switch across servers: SSH to each one (paramiko, host keys checked against Kestrel's list, never
trusted on first use), read what it has, run what kestrel.net.switch planned for it, keep a manifest there.

Commands are argument lists to the end; only at the SSH boundary are they joined, each word shlex-quoted
(ssh(1) hands the remote shell one string).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko

from kestrel import runner
from kestrel.config import Config, Server
from kestrel.errors import CommandError, InputError, KestrelError
from kestrel.net import switch
from kestrel.nodes import knownhosts, ssh
from kestrel.sysroot import Sysroot, atomic_write

KNOWN_HOSTS = "/var/lib/kestrel/switch/known_hosts"  # the servers' host keys, recorded by kestrel-switch trust
CONNECT_TIMEOUT = 10.0
T = TypeVar("T")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint (what ssh-keygen -l prints)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def lookup_names(server: Server) -> list[str]:
    hosts = [server.name, str(server.address)]
    return hosts if server.ssh_port == 22 else [f"[{h}]:{server.ssh_port}" for h in hosts]


class _Listed(paramiko.MissingHostKeyPolicy):
    """Accept the server's key only if the known_hosts list has it for the server's name or address."""

    def __init__(self, entries: list[knownhosts.Entry], server: Server) -> None:
        self.entries, self.server = entries, server

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not knownhosts.is_trusted(
            self.entries, lookup_names(self.server), knownhosts.HostKey(key.get_name(), key.get_base64())
        ):
            raise paramiko.SSHException(
                f"host key {key.get_name()} {fingerprint(key)} is not trusted; "
                f"check it, then kestrel-switch trust {self.server.name}"
            )


class _Capture(paramiko.MissingHostKeyPolicy):
    """Record the offered key and refuse the connection (kestrel-switch trust: look, do not log in)."""

    key: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.key = key
        raise paramiko.SSHException("host key captured")


class Host:
    """One server over SSH: a runner.Via (runner.run(argv, via=host)); one connection, reused, thread-safe."""

    def __init__(self, root: Sysroot, config: Config, server: Server) -> None:
        self.root, self.config, self.server = root, config, server
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"on {self.server.name}"

    def _connect(self, policy: paramiko.MissingHostKeyPolicy, auth: bool = True) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(policy)
        s, t = self.server, CONNECT_TIMEOUT
        secret: dict = (
            {"password": s.password}
            if s.password
            else {"pkey": ssh.load_key(self.root.path(s.key or self.config.nodes.ssh_key))}
            if auth
            else {}
        )
        try:
            # in the lab, the underlay is reached from the frontend's namespace, like the nodes (network.netns)
            sock = ssh.open_socket(str(s.address), s.ssh_port, t, self.config.network.netns)
            client.connect(
                str(s.address), s.ssh_port, username=s.user, timeout=t, banner_timeout=t, auth_timeout=t,
                look_for_keys=False, allow_agent=False, sock=sock, **secret,
            )  # fmt: skip
        except BaseException:
            client.close()
            raise
        return client

    def client(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is None:
                entries = knownhosts.parse(_read(self.root.path(KNOWN_HOSTS)))
                for path in ssh.known_hosts_files(self.root):
                    entries += knownhosts.parse(_read(path))
                try:
                    self._client = self._connect(_Listed(entries, self.server))
                except KestrelError:
                    raise
                except (OSError, paramiko.SSHException, EOFError) as e:
                    raise CommandError(f"{self.server.name} ({self.server.address}): {_why(e, self.server)}") from None
            return self._client

    def execute(self, argv: list[str], how: runner.How) -> runner.Ended:
        if how.env is not None or how.cwd is not None or how.output is not None or how.interactive:
            raise KestrelError("internal: SSH runs a command with no environment, folder, log file or terminal")
        try:
            transport = self.client().get_transport()
            if transport is None:
                raise paramiko.SSHException("not connected")
            chan = transport.open_session(timeout=how.timeout)
            return ssh._exec(chan, shlex.join(argv), how.timeout, None if how.input is None else how.input.encode())
        except (OSError, paramiko.SSHException, EOFError) as e:
            return runner.Ended(None, error=_why(e, self.server))

    def offered_key(self) -> paramiko.PKey:
        """The host key the server offers (no login)."""
        policy = _Capture()
        try:
            self._connect(policy, auth=False).close()
        except (OSError, paramiko.SSHException, EOFError) as e:
            if policy.key is None:
                raise CommandError(f"{self.server.name} ({self.server.address}): {_why(e, self.server)}") from None
        if policy.key is None:  # the policy refuses every key it sees: no key, no handshake
            raise CommandError(f"{self.server.name} ({self.server.address}): offered no host key")
        return policy.key

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def _why(e: BaseException, server: Server) -> str:
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError) and e.errors:
        return _why(next(iter(e.errors.values())), server)
    if isinstance(e, paramiko.AuthenticationException):
        return f"{'password' if server.password else 'key'} not accepted for {server.user}"
    if isinstance(e, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (sshd not running?)"
    return (str(e).strip() or type(e).__name__).splitlines()[0]


def trust(root: Sysroot, config: Config, name: str, confirm: Callable[[str], bool]) -> str:
    """Show SERVER's host key fingerprint; record the key in KNOWN_HOSTS if CONFIRM(fingerprint) says so."""
    server = server_named(config, name)
    key = Host(root, config, server).offered_key()
    fp = fingerprint(key)
    if not confirm(fp):
        raise InputError(f"{name}: host key {key.get_name()} {fp} not trusted (nothing recorded)")
    path = root.path(KNOWN_HOSTS)
    line = knownhosts.HostKey(key.get_name(), key.get_base64()).line(lookup_names(server)) + "\n"
    kept = [ln for ln in _read(path).splitlines(keepends=True) if ln != line]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(kept + [line]).encode(), 0o600)
    return f"Trusted {name} ({server.address}): {key.get_name()} {fp}"


def server_named(config: Config, name: str) -> Server:
    for s in config.servers:
        if s.name == name:
            return s
    listed = ", ".join(s.name for s in config.servers) or "none"
    raise InputError(f"{name}: not one of servers: ({listed})")


@dataclass
class State:
    """What a host has now."""

    plan: switch.HostPlan
    host: Host
    links: dict[str, dict]
    manifest: switch.Manifest
    nft_table: bool
    dropped: int | None


def run_steps(host: Host, steps: list[switch.Step], stop_on_error: bool) -> list[tuple[int, str]]:
    """STEPS in one SSH exec; with STOP_ON_ERROR the first failure is a CommandError naming it."""
    # the script is an argument, not standard input: the remote login shell's start-up files may read stdin
    result = runner.run(["sh", "-c", switch.steps_script(steps, stop_on_error)], via=host, timeout=120, check=False)
    if result.returncode is None:
        result.check()
    done = switch.parse_steps(result.stdout)
    if stop_on_error and (len(done) < len(steps) or any(rc for rc, _ in done)):
        failed = steps[len(done) - 1] if done and done[-1][0] else steps[len(done)]
        why = runner.last_line(result.stderr) or f"exit status {done[-1][0] if done else result.returncode}"
        raise CommandError(f"{host.server.name}: {shlex.join(failed.argv)} failed: {why}")
    return done


PROBE = [
    switch.Step(["id", "-u"]),
    switch.Step(["ip", "-j", "-d", "-s", "link", "show"]),
    switch.Step(["cat", switch.MANIFEST]),
    switch.Step(["nft", "-j", "list", "counter", "inet", switch.NFT_TABLE, "dropped"]),
]


def _probe(plan: switch.HostPlan, host: Host) -> State:
    name = plan.server.name
    for attempt in range(3):
        done = run_steps(host, PROBE, stop_on_error=False)
        if len(done) != len(PROBE):
            raise CommandError(f"{name}: the probe did not finish (sh -c over SSH)")
        (_, uid), (ip_rc, ip_json), (cat_rc, manifest_text), (nft_rc, nft_json) = done
        if uid.strip() != "0":
            raise CommandError(
                f"{name}: {plan.server.user} is not root there (uid {uid.strip()}); ip and nft need root"
            )
        try:
            links = switch.links_by_name(ip_json if ip_rc == 0 else "")
            break
        except ValueError:  # a link changed during the dump (ip then prints it cut): read again
            if attempt == 2:
                raise CommandError(f"{name}: ip -j link show gave no valid JSON three times") from None
    underlay = plan.server.underlay_interface
    if underlay not in links:
        raise CommandError(f"{name}: no underlay interface {underlay} (servers[].underlay_interface)")
    manifest = switch.Manifest.parse(manifest_text if cat_rc == 0 else "")
    dropped = _counter(nft_json) if nft_rc == 0 else None
    return State(plan, host, links, manifest, nft_rc == 0, dropped)


def _counter(nft_json: str) -> int | None:
    for item in json.loads(nft_json or "{}").get("nftables", []):
        if "counter" in item:
            return int(item["counter"].get("packets", 0))
    return None


def _parallel(fn: Callable[[T], object], items: Iterable[T]) -> list:
    items = list(items)
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(items)))) as pool:
        return list(pool.map(fn, items))


@dataclass
class Change:
    """What `up` or `down` does on one host."""

    state: State
    commands: list[list[str]]  # ip(8)
    nft: str | None  # nft -f - input, None: the rules stay
    manifest: switch.Manifest | None  # written after; None: removed (down) or unchanged

    @property
    def empty(self) -> bool:
        return not self.commands and self.nft is None

    def lines(self) -> list[str]:
        name = self.state.plan.server.name
        out = [f"{name}: {shlex.join(argv)}" for argv in self.commands]
        if self.nft is not None:
            peers = ", ".join(str(a) for a in self.state.plan.peers)
            verb = "delete" if self.nft.startswith("delete") else f"UDP {self.state.plan.port} from {peers} only"
            out.append(f"{name}: nft table inet {switch.NFT_TABLE}: {verb}")
        return out


class Switch:
    """The switch across all servers of CONFIG."""

    def __init__(self, root: Sysroot, config: Config) -> None:
        self.config = config
        self.plans = switch.plan_hosts(config)
        self.hosts = {p.server.name: Host(root, config, p.server) for p in self.plans}

    def close(self) -> None:
        for h in self.hosts.values():
            h.close()

    def probe(self) -> list[State]:
        return _parallel(lambda p: _probe(p, self.hosts[p.server.name]), self.plans)

    def mtu(self, states: list[State]) -> int:
        assert self.config.switch is not None
        mtus = {s.plan.server.name: int(s.links[s.plan.server.underlay_interface]["mtu"]) for s in states}
        return switch.overlay_mtu(self.config.switch, mtus, [s.plan.server.address for s in states])

    def plan_up(self) -> tuple[int, list[Change]]:
        states = self.probe()
        mtu = self.mtu(states)
        changes = []
        for st in states:
            commands = switch.plan_up(st.plan, mtu, st.links)
            ruleset = switch.nft_ruleset(st.plan)
            nft = switch.nft_up_input(ruleset) if not st.nft_table or st.manifest.ruleset != ruleset else None
            made = [n for n in st.manifest.devices if n in st.links] + switch.created(st.plan, st.links)
            manifest = switch.Manifest(made, switch.NFT_TABLE, ruleset, mtu)
            changes.append(Change(st, commands, nft, manifest if commands or nft or manifest != st.manifest else None))
        return mtu, changes

    def plan_down(self) -> list[Change]:
        changes = []
        for st in self.probe():
            nft = f"delete table inet {switch.NFT_TABLE}\n" if st.nft_table and st.manifest.nft_table else None
            changes.append(Change(st, switch.plan_down(st.manifest, st.links), nft, None))
        return changes

    def apply(self, changes: list[Change], removing: bool) -> None:
        def one(c: Change) -> None:
            steps = []
            if c.commands:
                steps.append(switch.Step(["ip", "-batch", "-"], switch.batch(c.commands)))
            if c.nft is not None:
                steps.append(switch.Step(["nft", "-f", "-"], c.nft))
            if c.manifest is not None:
                steps.append(switch.Step(["mkdir", "-p", str(Path(switch.MANIFEST).parent)]))
                steps.append(switch.Step(["tee", switch.MANIFEST], c.manifest.to_json()))
            elif removing and c.state.manifest.devices:
                steps.append(switch.Step(["rm", "-f", switch.MANIFEST]))
            if steps:
                run_steps(c.state.host, steps, stop_on_error=True)

        _parallel(one, changes)

    def status(self) -> tuple[list[dict], list[str]]:
        """Rows of every server's devices, and why each server that could not be read could not."""

        def one(plan: switch.HostPlan) -> tuple[list[dict], str]:
            try:
                st = _probe(plan, self.hosts[plan.server.name])
            except KestrelError as e:
                return switch.status_rows(plan, {}, None, str(e)), str(e)
            return switch.status_rows(st.plan, st.links, st.dropped), ""

        done = _parallel(one, self.plans)
        return [row for rows, _ in done for row in rows], [why for _, why in done if why]
