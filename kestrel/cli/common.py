"""What every kestrel-* program shares: --root, --config, -v/-q, --debug, --json, errors and exit codes."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from kestrel.config import CONFIG_PATH, Config, load_config
from kestrel.errors import KestrelError
from kestrel.sysroot import Sysroot

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    root: Sysroot
    config_path: Path
    verbosity: int = 0
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def say(self, line: str) -> None:
        """One line per action, on stderr (stdout is for data)."""
        if self.verbosity >= 0:
            click.echo(line, err=True)

    def detail(self, line: str) -> None:
        if self.verbosity > 0:
            click.echo(line, err=True)


def global_options(f: F) -> F:
    """--root, --config, -v, -q, --debug; builds the Context into click's obj."""

    @click.option("--root", "root", envvar="KESTREL_ROOT", default="/", show_default=True,
                  type=click.Path(file_okay=False), help="System tree to read and write (env KESTREL_ROOT).")
    @click.option("--config", "config", envvar="KESTREL_CONFIG", default=None, type=click.Path(dir_okay=False),
                  help=f"Config file [default: ROOT{CONFIG_PATH}] (env KESTREL_CONFIG).")
    @click.option("-v", "--verbose", count=True, help="Say more.")
    @click.option("-q", "--quiet", is_flag=True, help="Say nothing but errors and data.")
    @click.option("--debug", is_flag=True, help="Show tracebacks.")
    @click.pass_context
    @functools.wraps(f)
    def wrapper(cctx: click.Context, root: str, config: str | None, verbose: int, quiet: bool, debug: bool,
                **kwargs: Any) -> Any:
        sysroot = Sysroot(root)
        path = Path(config) if config else sysroot.path(CONFIG_PATH)
        cctx.obj = Context(sysroot, path, -1 if quiet else verbose, debug)
        return cctx.invoke(f, **kwargs)

    return wrapper  # type: ignore[return-value]


def pass_context(f: F) -> F:
    return click.pass_obj(f)  # type: ignore[return-value]


def run(command: click.Command, prog: str) -> None:
    """Run a click command; KestrelError -> 'prog: message' and its exit code (2 input, 1 runtime)."""
    debug = "--debug" in sys.argv
    try:
        command.main(prog_name=prog, standalone_mode=False)
    except KestrelError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"{prog}: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo(f"{prog}: aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table on stdout, the header in capitals."""
    cells = [[c.upper() for c in columns]] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
