"""Commands on nodes over SSH (paramiko): "a node is a machine that answers ssh with the cluster key"."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from kestrel.errors import KestrelError


class RemoteError(KestrelError):
    """A node could not be reached, refused the key, or did not answer in time."""


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Nodes boot from shared images and regenerate host keys: there is no stable host key to pin."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


def load_key(path: Path) -> paramiko.PKey:
    """The frontend's private key (any type paramiko reads); RemoteError with the path if it cannot."""
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise RemoteError(f"{path}: no such SSH key; create it with ssh-keygen -t ed25519 -N '' -f {path}") from None
    except (paramiko.SSHException, OSError, ValueError) as e:
        raise RemoteError(f"{path}: cannot read the SSH key ({e})") from None


def run_on(
    host: str, command: str | Sequence[str], key: Path | paramiko.PKey, *, user: str = "root", port: int = 22,
    timeout: float = 10.0,
) -> Result:
    """Run COMMAND (a shell string, or an argv list that is quoted here) on HOST as USER with KEY.

    Returns the exit status and output; a node that cannot be reached or refuses the key is a RemoteError.
    """
    pkey = key if isinstance(key, paramiko.PKey) else load_key(key)
    text = command if isinstance(command, str) else shlex.join(command)
    where = f"{user}@{host}:{port}"
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_AcceptNew())
    try:
        client.connect(host, port=port, username=user, pkey=pkey, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, look_for_keys=False, allow_agent=False)
        _, stdout, stderr = client.exec_command(text, timeout=timeout)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        return Result(stdout.channel.recv_exit_status(), out, err)
    except paramiko.AuthenticationException:
        raise RemoteError(f"{where}: the key was refused") from None
    except TimeoutError:
        raise RemoteError(f"{where}: no answer within {timeout:g} s") from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise RemoteError(f"{where}: {_why(e)}") from None
    finally:
        client.close()


def _why(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError) or "Unable to connect" in str(error):
        return "connection refused (no sshd?)"
    return str(error) or type(error).__name__
