"""Fixtures shared by every tier: a Kestrel tree under tmp_path, and network namespaces that always go away."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kestrel import runner
from kestrel.net.netns import Topology
from kestrel.output import Output, setup
from kestrel.sysroot import Sysroot

REPO = Path(__file__).resolve().parent.parent

# A shell pointed at a lab (eval "$(kestrel-lab env)") must not point the tests' programs at it: every test names
# its own tree. The image cache (KESTREL_CACHE_DIR) and the e2e settings (KESTREL_E2E_*) stay.
for _name in ("KESTREL_ROOT", "KESTREL_CONFIG"):
    os.environ.pop(_name, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite tests/golden/ and docs/man/ from the current output."
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests in integration/ and e2e/ carry their marker without repeating it in every file."""
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        if f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
        for tier in ("fuzz", "crash"):
            if f"{os.sep}{tier}{os.sep}" in path:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def tree(tmp_path: Path) -> Sysroot:
    """A --root tree holding the shipped default /etc/kestrel."""
    shutil.copytree(REPO / "etc-kestrel", tmp_path / "etc" / "kestrel")
    return Sysroot(tmp_path)


def write_config(root: Sysroot, text: str) -> Path:
    path = root.path("/etc/kestrel/kestrel.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def eventually(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Whether PREDICATE holds within TIMEOUT seconds, asking every INTERVAL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class Recorder:
    """Stands in for the runner module of a module under test: records the commands instead of running them
    (monkeypatch.setattr(services, "runner", Recorder()): systemctl on a tree rendered as a real frontend)."""

    def __init__(self, active: bool = True) -> None:
        self.ran: list[list[str]] = []
        self.active = active  # what `systemctl is-active` answers (a question, not recorded)

    def run(self, argv: list[str], **kw: object) -> runner.Result:
        if argv[:2] == ["systemctl", "is-active"]:
            return runner.Result(list(argv), returncode=0 if self.active else 3)
        self.ran.append(list(argv))
        return runner.Result(list(argv), returncode=0)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, real services)")


@pytest.fixture
def topology() -> Iterator[Topology]:
    """Namespaces and devices named kt-XXX..., removed at the end of the test, also when it fails."""
    need_root()
    topo = Topology(prefix=f"kt-{secrets.token_hex(2)[:3]}")
    try:
        yield topo
    finally:
        problems = topo.destroy()
        assert not problems, problems


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.lines.append(f"Warning: {text}" if record.levelno == logging.WARNING else text)


@contextlib.contextmanager
def said() -> Iterator[list[str]]:
    """The lines Kestrel says (INFO and up, as the admin reads them on stderr) while the block runs."""
    setup(Output())
    handler = _Lines()
    logger = logging.getLogger("kestrel")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def processes_naming(tree: Path) -> list[str]:
    """PIDs of live processes (but this one) whose command line names TREE: what a test left running."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(tree) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(proc.name)
        except OSError:
            continue
    return [p for p in found if int(p) != os.getpid()]
