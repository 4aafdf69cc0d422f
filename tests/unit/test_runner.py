"""The one failure sentence, whatever ended the command and wherever it ran; spawn and become."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from kestrel import runner
from kestrel.errors import CommandError
from tests.conftest import eventually


def sentence(argv: list[str], **kwargs: object) -> str:
    with pytest.raises(CommandError) as e:
        runner.run(argv, **kwargs)  # type: ignore[arg-type]
    return str(e.value)


def test_exit_code_and_the_last_stderr_line() -> None:
    assert sentence(["sh", "-c", "echo first >&2; echo last >&2; echo >&2; exit 3"]) == (
        "'sh -c echo first ...': exit code 3: last"
    )
    assert sentence(["false"]) == "'false': exit code 1"


def test_signal() -> None:
    assert sentence(["sh", "-c", "kill -TERM $$"]) == "'sh -c kill -TERM ...': killed by SIGTERM"


def test_not_found() -> None:
    assert sentence(["kt-no-such-program", "--flag"]) == "'kt-no-such-program --flag': command not found"
    result = runner.run(["/nonexistent/kt-prog"], check=False)
    assert (result.ok, result.returncode, result.why()) == (False, None, "command not found")


def test_timeout_kills_it_and_keeps_what_it_said() -> None:
    started = time.monotonic()
    result = runner.run(["sh", "-c", "echo waiting >&2; exec sleep 30"], timeout=0.5, check=False)
    assert time.monotonic() - started < 10
    assert (result.ok, result.returncode) == (False, None)
    assert result.sentence() == "'sh -c echo waiting ...': timed out after 0.5 s: waiting"
    with pytest.raises(CommandError, match=r"^'sh -c echo waiting \.\.\.': timed out after 0\.5 s: waiting$"):
        result.check()


def test_success_is_checked_and_returned() -> None:
    result = runner.run(["sh", "-c", "echo out; echo err >&2"])
    assert (result.ok, result.returncode, result.stdout, result.stderr) == (True, 0, "out\n", "err\n")
    assert result.where == "" and result.seconds >= 0 and result.check() is result


def test_missing_folder_is_not_a_missing_command(tmp_path: Path) -> None:
    result = runner.run(["true"], cwd=str(tmp_path / "gone"), check=False)
    assert result.why().startswith("cannot start it: ") and "No such file" in result.why()


class Elsewhere:
    """A Via that answers like a remote shell would."""

    where = "on kt-node"

    def execute(self, argv: list[str], how: runner.How) -> runner.Ended:
        return runner.Ended(127, "", f"sh: 1: {argv[0]}: not found\n")


def test_a_via_gives_the_same_shape() -> None:
    assert sentence(["kt-tool", "a"], via=Elsewhere()) == (
        "'kt-tool a' on kt-node: exit code 127: sh: 1: kt-tool: not found"
    )
    # a missing program in a network namespace is told before `ip netns exec` would say it in its own words
    result = runner.run(["kt-no-such-program"], via=runner.Netns("kt-none"), check=False)
    assert result.sentence() == "'kt-no-such-program' in network namespace kt-none: command not found"
    assert runner.in_netns(None) is None and runner.in_netns("kt-x") == runner.Netns("kt-x")


def test_every_run_is_logged_with_its_time_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kestrel.runner"):
        runner.run(["true"])
        runner.run(["kt-x"], via=Elsewhere(), check=False)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("Ran true in ") and messages[0].endswith(" s (exit code 0)")
    assert messages[1].startswith("Ran kt-x on kt-node in ") and messages[1].endswith(" s (exit code 127)")


def test_spawn_starts_a_session_that_logs(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    process = runner.spawn(["sh", "-c", "echo ready; echo warn >&2; exec sleep 30"], log=log, env={"PATH": os.defpath})
    try:
        assert eventually(lambda: log.read_text() == "ready\nwarn\n", 5)
        assert os.getsid(process.pid) == process.pid and process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
    assert eventually(lambda: process.poll() is not None, 5)


def test_spawn_and_become_say_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"^'kt-no-daemon -f' in network namespace kt-x: command not found$"):
        runner.spawn(["kt-no-daemon", "-f"], log=tmp_path / "log", netns="kt-x")
    with pytest.raises(CommandError, match=r"^'kt-no-shell': command not found$"):
        runner.become(["kt-no-shell"])


def test_the_command_shows_four_words() -> None:
    assert runner.describe(["echo $SSH_CONNECTION"]) == "'echo $SSH_CONNECTION'"
    assert runner.describe(["ip", "link", "add", "kt-a", "type", "veth"]) == "'ip link add kt-a ...'"
