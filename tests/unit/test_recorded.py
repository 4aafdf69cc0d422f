"""kestrel-apt's recorded changes: what apt-get steps record, the file's round trip and its located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kestrel.errors import InputError
from kestrel.images.recorded import Recorded, describe, parse_recorded, render_recorded


def test_steps_record_installs_and_removes_the_last_word_winning() -> None:
    before = Recorded(install=("htop",), remove=("nano",))
    after = before.applied(
        [
            ["install", "--no-install-recommends", "hello", "./local.deb", "vim=2:9.0"],
            ["remove", "--purge", "htop"],
            ["upgrade"],
            ["-y", "install", "nano"],
        ]
    )
    assert after == Recorded(install=("hello", "nano"), remove=("htop",))
    assert describe(before, after) == "install hello, install nano, remove htop"
    assert describe(after, Recorded()) == "no longer install hello, no longer install nano, no longer remove htop"


def test_the_file_round_trips_and_errors_name_file_and_line() -> None:
    recorded = Recorded(install=("hello",), remove=("netbase",))
    assert parse_recorded(render_recorded("mini", recorded).decode(), "mini.apt") == recorded
    assert parse_recorded("install a  # why\n\nremove a\n", "x") == Recorded(remove=("a",))
    with pytest.raises(InputError) as bad:
        parse_recorded("install hello\nupgrade\n", Path("/etc/kestrel/images/mini.apt"))
    assert str(bad.value) == "/etc/kestrel/images/mini.apt:2: expected 'install PKG' or 'remove PKG', got 'upgrade'"
    with pytest.raises(InputError) as bad:
        parse_recorded("install Hello\n", "mini.apt")
    assert str(bad.value) == "mini.apt:1: 'Hello' is not a Debian package name (a-z, 0-9, '+', '-', '.')"
