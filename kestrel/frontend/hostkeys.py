"""SSH host keys pushed after boot (with the firewall module): no host private key in the exported image.

The image holds only the public host keys (the frontend's known_hosts and the nodes' own still list them); the
private ones stay on the frontend, in /var/lib/kestrel/ssh/IMAGE (where sshd_host-keys keeps them stable across
builds). A node fetches them over HTTP before its sshd starts (kestrel.frontend.keybundles). One that could not
boots with a throwaway key made under /run (tmpfs), so its sshd starts; once it answers, the frontend connects with
its root key (which the image authorises) and pushes the image's keys, then sshd reloads and shows the stable key.
That connection cannot check the node's host key (it has only the boot key): it is accepted only if the frontend's
neighbour table gives the node's registered MAC for its address, which the firewall (MAC + address pairs) also
requires. Every later connection pins the image's keys. The same connection delivers the users' keys.
"""

from __future__ import annotations

import base64
import logging
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from kestrel import runner, supervisor
from kestrel.config import Config
from kestrel.errors import CommandError
from kestrel.frontend import firewall, keybundles
from kestrel.frontend.keybundles import KEYS_DIR
from kestrel.nodes import fanout, knownhosts, registry, ssh
from kestrel.sysroot import Sysroot
from kestrel.users import userkeys
from kestrel.users.accountfiles import load_users
from kestrel.users.hosttrust import known_hosts_body

logger = logging.getLogger(__name__)

BOOT_KEY = "/run/kestrel/boot_host_ed25519_key"  # the node's throwaway key (phases/node sshd_host-keys)
WAIT = 900  # seconds a booting node has to answer SSH before a background push gives up

# Runs on the node as root: KEY_NAME BASE64 lines on stdin; each key written aside and renamed, sshd told to
# read its keys again (SIGHUP) only when one changed.
_SCRIPT = """set -e
umask 077
changed=
while read -r name data; do
  case "$name" in ssh_host_*_key) ;; *) echo "bad key name" >&2; exit 2 ;; esac
  printf '%s' "$data" | base64 -d > "/etc/ssh/.$name.kestrel"
  if cmp -s "/etc/ssh/.$name.kestrel" "/etc/ssh/$name"; then rm -f "/etc/ssh/.$name.kestrel"
  else mv -f "/etc/ssh/.$name.kestrel" "/etc/ssh/$name"; changed=1; fi
done
if [ -n "$changed" ]; then
  if [ -s /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)"; else systemctl reload ssh; fi
  echo delivered
fi
"""


def enabled(config: Config) -> bool:
    """Host keys are delivered after boot with the firewall module (which puts none in the image)."""
    return firewall.enabled(config)


@dataclass(frozen=True)
class Delivered:
    node: str
    ok: bool
    why: str = ""
    changed: bool = False
    answered: float = 0.0  # seconds it waited for the node's sshd
    tries: int = 0  # SSH sessions it took


def private_keys(root: Sysroot, image: str) -> dict[str, bytes]:
    found = keybundles.private_keys(root, image)
    if not found:
        raise CommandError(f"{root.sys(f'{KEYS_DIR}/{image}')}: no host keys of image {image} (build it first)")
    return found


def neighbour_mac(config: Config, address: str) -> str | None:
    """The MAC the frontend's neighbour table holds for ADDRESS (in network.netns), None if none."""
    argv = ["ip", "neigh", "show", address]
    if config.network.netns:
        argv = ["ip", "-n", config.network.netns, "neigh", "show", address]
    words = runner.run(argv, check=False, timeout=10).stdout.split()
    return words[words.index("lladdr") + 1].lower() if "lladdr" in words else None


def deliver(root: Sysroot, config: Config, targets: list[ssh.Target], *, wait: float = 0.0) -> list[Delivered]:
    """Push each node's image host keys to TARGETS (registered nodes), waiting up to WAIT s for one to answer."""
    nodes = {n.name: n for n in registry.load_registry(root)}
    timeout = float(config.nodes.ssh_timeout)

    def vouch(target: ssh.Target) -> bool:
        node = nodes.get(target.name)
        return node is not None and str(node.ip) == target.address and neighbour_mac(config, target.address) == node.mac

    entries = knownhosts.parse(known_hosts_body(root, config))
    key = root.path(config.nodes.ssh_key)
    known = ssh.known_hosts_files(root)
    with ssh.Pool("root", key, known, timeout, config.network.netns, entries, vouch=vouch) as pool:
        return fanout.fan_out(targets, lambda t: _deliver(root, pool, t, nodes, wait), 10)


def _deliver(
    root: Sysroot, pool: ssh.Pool, target: ssh.Target, nodes: dict[str, registry.Node], wait: float
) -> Delivered:
    node = nodes.get(target.name)
    if node is None:
        return Delivered(target.name, False, "not registered")
    try:
        keys = private_keys(root, node.image)
    except CommandError as e:
        return Delivered(target.name, False, str(e))
    lines = "".join(f"{name} {base64.b64encode(data).decode()}\n" for name, data in keys.items())
    started = time.monotonic()
    deadline, tries, changed = started + wait, 0, False
    while True:
        # a booting node: its port 22 polled every 0.2 s (an SSH attempt to a silent address waits ssh_timeout)
        while time.monotonic() < deadline and not _answers(pool, target):
            time.sleep(0.2)
        answered, tries = time.monotonic() - started, tries + 1
        if pool.shows_listed_key(target):  # it fetched its keys at boot: nothing to push
            break
        done = runner.run(["sh", "-c", shlex.quote(_SCRIPT)], via=pool.on(target), input=lines, timeout=60, check=False)
        if not done.ok and done.returncode is None and time.monotonic() <= deadline:
            logger.debug(f"{target.name}: {done.why()}; again")
            time.sleep(0.5)  # sshd answered but the session failed: still starting
            continue
        if not done.ok:
            return Delivered(target.name, False, done.why(), answered=answered, tries=tries)
        changed = "delivered" in done.stdout
        break
    if lines := userkeys.key_lines(root, load_users(root)):  # the users' keys (in the frontend only with the module)
        users = userkeys.deliver(pool, target, lines)
        if not users.ok:
            return Delivered(target.name, False, f"users' keys: {users.why()}")
    return Delivered(target.name, True, changed=changed, answered=answered, tries=tries)


def _answers(pool: ssh.Pool, target: ssh.Target) -> bool:
    try:
        sock = ssh.open_socket(target.address, target.port, 1.0, pool.netns_name)
    except (OSError, CommandError):
        return False
    if sock is None:  # no namespace: a plain connection
        try:
            sock = socket.create_connection((target.address, target.port), 1.0)
        except OSError:
            return False
    sock.close()
    return True


def record(node: str) -> str:
    """The supervised process of a background delivery (one per node)."""
    return f"host-keys-{node}"


def spawn(root: Sysroot, config_path: Path | None, node: str) -> None:
    """`kestrel-nodes host-keys NODE --wait` in the background, unless one runs already: the registrar starts it
    for a node whose lease is new, the status monitor for a node that mounted its root (every boot)."""
    if supervisor.find(root, record(node)):
        return
    argv = runner.kestrel_argv("nodes", "--root", str(root.root))
    argv += ["--config", str(config_path)] if config_path else []
    supervisor.start(root, record(node), [*argv, "host-keys", node, "--wait", str(WAIT)])
