"""The cluster users pushed to running nodes (remote writes: a node's files are not under --root).

Two commands per node on the kept SSH connections (the keeper, as exec and check): one reads the node's account
files, one writes those that change (sent on standard input, written aside and renamed, an existing file keeping
its mode and owner). Nodes that need the same writes get them in one request."""

from __future__ import annotations

import base64
import binascii
import logging
import shlex

from kestrel.config import Config
from kestrel.nodes import fanout, registry, ssh
from kestrel.nodes import state as nodestate
from kestrel.sysroot import Sysroot, decode, encode
from kestrel.users import userkeys
from kestrel.users.accountfiles import MODES, TREE_FILES, load_users, new_texts, today
from kestrel.users.hosttrust import known_hosts_body

logger = logging.getLogger(__name__)

# PATH BASE64 per line for each of the files that exists (fixed paths: TREE_FILES).
READ_COMMAND = (
    f"for f in {' '.join(shlex.quote(p) for p in TREE_FILES)}; do "
    'if [ -f "$f" ]; then printf "%s " "$f"; base64 -w0 "$f"; echo; fi; done'
)
# PATH MODE BASE64 lines on standard input; paths are Kestrel's (TREE_FILES), checked again here.
_WRITE = """set -e
umask 077
while read -r path mode data; do
  case "$path" in /etc/*) ;; *) echo "bad path" >&2; exit 2 ;; esac
  tmp="${path%/*}/.${path##*/}.kestrel-tmp"
  mkdir -p "${path%/*}"
  printf '%s' "$data" | base64 -d > "$tmp"
  if [ -e "$path" ]; then chmod --reference="$path" "$tmp"; chown --reference="$path" "$tmp"
  else chmod "$mode" "$tmp"; fi
  mv -f "$tmp" "$path"
done
"""
WRITE_COMMAND = f"sh -c {shlex.quote(_WRITE)}"


def parse_read(output: str) -> dict[str, str | None]:
    """READ_COMMAND's answer as the texts of TREE_FILES (None: absent); ValueError if it is garbled."""
    found: dict[str, str | None] = dict.fromkeys(TREE_FILES)
    for line in output.splitlines():
        path, _, data = line.partition(" ")
        if path not in found:
            raise ValueError(f"unexpected line from the node: {line[:60]!r}")
        try:
            found[path] = decode(base64.b64decode(data, validate=True))
        except binascii.Error:
            raise ValueError(f"{path}: not base64 from the node") from None
    return found


def write_lines(changed: dict[str, str]) -> str:
    """WRITE_COMMAND's input for the CHANGED texts."""
    return "".join(
        f"{path} {MODES.get(path, 0o644):o} {base64.b64encode(encode(text)).decode()}\n"
        for path, text in changed.items()
    )


def running_nodes(root: Sysroot) -> list[ssh.Target]:
    """Registered nodes not known to be down (a down node gets the users from its image when it boots)."""
    states = nodestate.load_states(root)
    return [
        ssh.Target(n.name, str(n.ip))
        for n in registry.load_registry(root)
        if n.mac not in states or states[n.mac].state is not nodestate.State.DOWN
    ]


def describe_push(root: Sysroot) -> list[str]:
    """What a push would do (for --dry-run): which nodes it would try; none is contacted."""
    targets = running_nodes(root)
    if not targets:
        return []
    return [f"Would update the cluster users on {_count(len(targets))}: " + ", ".join(t.name for t in targets)]


def push_to_nodes(
    root: Sysroot, config: Config, parallel: int = 10, connect_timeout: float = 3.0
) -> list[tuple[str, str]]:
    """Send the users to every registered node that answers; returns (node, why) for those that did not.

    A node that is down gets them from its image when it boots, so a failure here is only a warning.
    """
    users, body = load_users(root), known_hosts_body(root, config)
    targets = running_nodes(root)
    if not targets:
        return []

    def run(group: list[ssh.Target], command: str, input: str = "") -> list[tuple[ssh.Target, str | None]]:
        results = fanout.exec_on(
            root,
            config,
            group,
            command,
            parallel=parallel,
            connect_timeout=connect_timeout,
            command_timeout=60,
            input=input,
        )
        return [(t, None if r.ok else r.why()) for t, r in zip(group, results, strict=True)]

    failed: dict[str, str] = {}
    writes: dict[str, list[ssh.Target]] = {}  # the same input for every node that needs the same writes
    for t, r in zip(
        targets,
        fanout.exec_on(
            root, config, targets, READ_COMMAND, parallel=parallel, connect_timeout=connect_timeout, command_timeout=60
        ),
        strict=True,
    ):
        try:
            if not r.ok:
                raise ValueError(r.why())
            writes.setdefault(write_lines(new_texts(parse_read(r.stdout), users, config, body, today())), []).append(t)
        except ValueError as e:
            failed[t.name] = str(e)
    for lines, group in writes.items():
        if lines:
            failed.update((t.name, why) for t, why in run(group, WRITE_COMMAND, lines) if why)
    keys = userkeys.key_lines(root, users) if userkeys.enabled(config) else ""
    reached = [t for t in targets if t.name not in failed]
    if keys and reached:
        command = f"sh -c {shlex.quote(userkeys.DELIVER_SCRIPT)}"
        failed.update((t.name, f"users' keys: {why}") for t, why in run(reached, command, keys) if why)
    logger.info(f"Updated the cluster users on {_count(len(targets) - len(failed))}")
    for name, why in failed.items():
        logger.warning(f"{name}: not updated ({why}); it gets the users from its image at next boot")
    return list(failed.items())


def _count(n: int) -> str:
    return f"{n} running node{'s' if n != 1 else ''}"
