"""The users push's two remote commands: the read answer parsed (garbage refused), the writes' input."""

from __future__ import annotations

import base64

import pytest

from kestrel.users.node_push import parse_read, write_lines


def test_read_answer_round_trip_and_garbage() -> None:
    passwd = "root:x:0:0:root:/root:/bin/bash\n\xe9t\xe9\n"
    line = f"/etc/passwd {base64.b64encode(passwd.encode()).decode()}\n"
    found = parse_read(line)
    assert found["/etc/passwd"] == passwd and found["/etc/shadow"] is None
    with pytest.raises(ValueError, match="unexpected line"):
        parse_read("/etc/evil AAAA\n")
    with pytest.raises(ValueError, match="not base64"):
        parse_read("/etc/passwd ***\n")


def test_write_lines_carry_path_mode_and_content() -> None:
    [line] = write_lines({"/etc/shadow": "alice:*:1::::::\n"}).splitlines()
    path, mode, data = line.split(" ")
    assert (path, mode, base64.b64decode(data)) == ("/etc/shadow", "640", b"alice:*:1::::::\n")
