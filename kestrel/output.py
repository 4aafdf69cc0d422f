"""Messages for the admin: every module logs to `kestrel.*`; one handler writes them to stderr, a line each.

Data (tables, JSON) goes to stdout through the CLI, never through here. `-q` keeps only errors, `-v` adds
each command run with its duration; colour only on a terminal and never with NO_COLOR set.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TextIO

_COLOURS = {logging.DEBUG: "\033[2m", logging.WARNING: "\033[33m", logging.ERROR: "\033[31m"}
_RESET = "\033[0m"
# Set for the processes the lab supervises: their log files get each line's time (journald stamps its own).
LOG_TIMES = "KESTREL_LOG_TIMES"


@dataclass(frozen=True)
class Output:
    """How a program talks: -1 quiet (errors only), 0 normal, 1 and more verbose; tracebacks with debug."""

    verbosity: int = 0
    debug: bool = False

    @property
    def level(self) -> int:
        return logging.ERROR if self.verbosity < 0 else logging.INFO if self.verbosity == 0 else logging.DEBUG


def wants_colour(stream: TextIO) -> bool:
    """https://no-color.org: NO_COLOR set to anything but the empty string turns colour off."""
    return not os.environ.get("NO_COLOR") and stream.isatty()


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno == logging.WARNING:
            text = f"Warning: {text}"
        if os.environ.get(LOG_TIMES):
            text = f"{self.formatTime(record, '%H:%M:%S')} {text}"
        colour = _COLOURS.get(record.levelno) if wants_colour(sys.stderr) else None
        return f"{colour}{text}{_RESET}" if colour else text


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (tests swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def setup(output: Output) -> None:
    """Route every `kestrel.*` logger to stderr at OUTPUT's level (idempotent: one handler)."""
    logger = logging.getLogger("kestrel")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(output.level)
    # paramiko logs a failed connection from its own thread ("Error reading SSH protocol banner", then a traceback)
    # and Python's last-resort handler would print it: Kestrel reports the failure itself in one line; -vv shows it.
    library = logging.getLogger("paramiko")
    library.handlers = [handler if output.verbosity >= 2 else logging.NullHandler()]
    library.propagate = False
