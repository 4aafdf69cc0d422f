"""Input files read safely: a regular file under a size limit, never a FIFO, a device or /dev/zero."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kestrel.errors import InputError

# kestrel.yaml, an image definition: far below this; a leases file of 100,000 nodes: about 8 MB.
CONFIG_LIMIT = 1 << 20
LEASES_LIMIT = 64 << 20
STDIN = "/dev/stdin"


def read_input(path: Path, limit: int = CONFIG_LIMIT) -> bytes:
    """The bytes of PATH; InputError naming PATH if it is missing, not a regular file or over LIMIT bytes.

    O_NONBLOCK: opening a FIFO must not wait for a writer (the check that follows refuses it). A pipe named
    /dev/stdin (a phase script pipes the config to kestrel-users) is what its caller chose to give: it is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) and not (str(path) == STDIN and stat.S_ISFIFO(info.st_mode)):
            raise InputError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        if info.st_size > limit:
            raise InputError(f"{path}: larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(f"{path}: larger than {limit} bytes")
    return data
