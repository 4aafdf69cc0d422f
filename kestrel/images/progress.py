"""The step counter of a long build, a line when a step starts and one when it ends:
`[3/6] packages: apt (10 packages) ...` then `[3/6] packages: apt (10 packages) ... 42 s, log: PATH`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """The steps of one build, in order: (key, label). A key not among them is run without a line."""

    steps: list[tuple[str, str]] = field(default_factory=list)

    def add(self, key: str, label: str) -> None:
        self.steps.append((key, label))

    @contextmanager
    def step(self, key: str, log: Path | None = None) -> Iterator[None]:
        keys = [k for k, _ in self.steps]
        if key not in keys:
            yield
            return
        n = keys.index(key)
        head = f"[{n + 1}/{len(keys)}] {key}: {self.steps[n][1]} ..."
        logger.info(head)
        started = time.monotonic()
        yield
        logger.info(f"{head} {time.monotonic() - started:.0f} s" + (f", log: {log}" if log and log.exists() else ""))
