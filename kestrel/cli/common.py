"""What every kestrel-* program shares: --root, --config, -v/-q, --debug; the context; the error boundary."""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click import shell_completion

from kestrel import output
from kestrel.config import CONFIG_PATH, Config, load_config
from kestrel.errors import InputError, KestrelError
from kestrel.output import Output
from kestrel.sysroot import Sysroot

F = TypeVar("F", bound=Callable[..., Any])
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HELP_OPTIONS = ["-h", "--help"]


class Group(click.Group):
    """A program's top command: -h is --help in every subcommand, and the program's own options (--root,
    --config, -v, -q, --debug, --version) may also come after the subcommand, as in wwctl or clush."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {"help_option_names": HELP_OPTIONS, **kwargs.get("context_settings", {})}
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, lift_options(self, ctx, args))


class Command(click.Command):
    """A program without subcommands: -h is --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {"help_option_names": HELP_OPTIONS, **kwargs.get("context_settings", {})}
        super().__init__(*args, **kwargs)


def _options(command: click.Command) -> dict[str, click.Option]:
    return {n: p for p in command.params if isinstance(p, click.Option) for n in [*p.opts, *p.secondary_opts]}


def _takes_value(option: click.Option | None, word: str) -> bool:
    return option is not None and not option.is_flag and not option.count and "=" not in word


def lift_options(group: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """ARGS with GROUP's own options that follow the subcommand moved before it (with their values), unless
    the subcommand has an option of that name. Nothing after `--` moves, nor after the first argument of a
    subcommand whose arguments end with a command of their own (allow_interspersed_args off: lab ssh)."""
    own = _options(group)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if _takes_value(own.get(args[i].split("=", 1)[0]), args[i]) else 1
    if i >= len(args) or args[i] == "--":
        return args
    sub = group.get_command(ctx, args[i])
    theirs = _options(sub) if sub is not None else {}
    interspersed = sub is None or sub.context_settings.get("allow_interspersed_args", sub.allow_interspersed_args)
    lifted: list[str] = []
    kept: list[str] = []
    rest = args[i + 1 :]
    j = 0
    while j < len(rest):
        word = rest[j]
        name = word.split("=", 1)[0]
        shorts = [f"-{c}" for c in word[1:]] if re.fullmatch(r"-[a-zA-Z]{2,}", word) else []
        if word == "--" or (not word.startswith("-") and not interspersed):
            kept += rest[j:]
            break
        if name in own and name not in theirs:
            step = 2 if _takes_value(own[name], word) else 1
            lifted += rest[j : j + step]
        elif shorts and all(s in own and s not in theirs and not _takes_value(own[s], s) for s in shorts):
            step = 1
            lifted.append(word)  # -vv
        else:
            step = 2 if word.startswith("-") and _takes_value(theirs.get(name), word) else 1
            kept += rest[j : j + step]
        j += step
    return [*lifted, *args[: i + 1], *kept]


@dataclass(frozen=True)
class Context:
    """What a command works on: the system tree, the config (read when first used) and how to talk."""

    root: Sysroot
    config_path: Path
    output: Output = Output()

    @functools.cached_property
    def config(self) -> Config:
        return load_config(self.config_path, admin_dir=self.root.path("/etc/kestrel"))


def output_options(f: F) -> F:
    """-v, -q, --debug and --version."""
    f = click.version_option(package_name="kestrel", message="%(prog)s %(version)s")(f)
    f = click.option("--debug", is_flag=True, help="Show tracebacks.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Say nothing but errors and data.")(f)
    return click.option("-v", "--verbose", count=True, help="Say more (-v: every command run, with its time).")(f)


def make_context(
    cctx: click.Context, root: Sysroot, config_path: Path, verbose: int, quiet: bool, debug: bool
) -> Context:
    """The frozen context of this run, kept in click's obj (the error boundary reads --debug there)."""
    ctx = Context(root, config_path, Output(-1 if quiet else verbose, debug))
    output.setup(ctx.output)
    cctx.obj = ctx
    return ctx


def global_options(f: F) -> F:
    """--root, --config, -v, -q, --debug; builds the Context into click's obj."""

    @click.option(
        "--root",
        "root",
        envvar="KESTREL_ROOT",
        default="/",
        show_default=True,
        type=click.Path(file_okay=False),
        help="System tree to read and write (env KESTREL_ROOT).",
    )
    @click.option(
        "--config",
        "config",
        envvar="KESTREL_CONFIG",
        default=None,
        type=click.Path(dir_okay=False),
        help=f"Config file [default: ROOT{CONFIG_PATH}] (env KESTREL_CONFIG).",
    )
    @output_options
    @click.pass_context
    @functools.wraps(f)
    def wrapper(
        cctx: click.Context, root: str, config: str | None, verbose: int, quiet: bool, debug: bool, **kwargs: Any
    ) -> Any:
        if not Path(root).is_dir():
            raise InputError(f"--root {root}: no such directory")
        sysroot = Sysroot(root)
        make_context(cctx, sysroot, Path(config) if config else sysroot.path(CONFIG_PATH), verbose, quiet, debug)
        return cctx.invoke(f, **kwargs)

    return wrapper  # type: ignore[return-value]


def pass_context(f: F) -> F:
    return click.pass_obj(f)  # type: ignore[return-value]


def dry_run_options(f: F) -> F:
    """--dry-run and --diff."""
    f = click.option("--diff", is_flag=True, help="Show unified diffs of the files that change.")(f)
    return click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")(f)


def print_dry_run(lines: list[str]) -> None:
    """What a dry run prints on stdout: a line per thing it would do, or that there is nothing to do."""
    click.echo("\n".join(lines or ["Nothing to do"]))


def run(command: click.Command, prog: str, args: Sequence[str] | None = None) -> NoReturn:
    """The error boundary of every program: each failure becomes one line `PROG: message` on stderr and exit 1
    (runtime) or 2 (bad input, usage); a traceback only with --debug."""
    cctx: click.Context | None = None
    completing = os.environ.get(completion_var(prog))
    if completing:  # the bash completion script asks (python -m kestrel.cli.completion writes those scripts)
        sys.exit(shell_completion.shell_complete(command, {}, prog, completion_var(prog), completing))
    try:
        with command.make_context(prog, list(sys.argv[1:] if args is None else args)) as cctx:
            command.invoke(cctx)
        sys.exit(0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line too, with where to look
        where = e.ctx.command_path if e.ctx is not None else prog
        click.echo(f"{prog}: {one_line(e.format_message())} (see {where} --help)", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"{prog}: {one_line(e.format_message())}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        _fail(prog, cctx, "aborted", 1)
    except KeyboardInterrupt:
        _fail(prog, cctx, "interrupted", 1)
    except KestrelError as e:
        _fail(prog, cctx, str(e), e.exit_code)
    except OSError as e:
        _fail(prog, cctx, describe_os_error(e), 1)
    except Exception as e:  # the boundary: a bug still gets one line, and --debug shows where
        _fail(prog, cctx, f"internal error: {type(e).__name__}: {e} (run again with --debug for the traceback)", 1)


def completion_var(prog: str) -> str:
    """The variable PROG's bash completion script sets: _KESTREL_NODES_COMPLETE."""
    return "_" + prog.upper().replace("-", "_") + "_COMPLETE"


def describe_os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    why = e.strerror or str(e)
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{where}{why} (Kestrel changes system files: run it as root)"
    return f"{where}{why}"


def _fail(prog: str, cctx: click.Context | None, message: str, code: int) -> NoReturn:
    ctx = _find_obj(cctx)
    if ctx is not None and ctx.output.debug:
        traceback.print_exc()
    click.echo(f"{prog}: {one_line(message)}", err=True)
    sys.exit(code)


def one_line(message: str) -> str:
    """MESSAGE with its control characters escaped: a bad value that holds a newline stays on the error's line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)


def _find_obj(cctx: click.Context | None) -> Context | None:
    obj = cctx.obj if cctx is not None else None
    return obj if isinstance(obj, Context) else None


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def print_rows(
    rows: list[dict[str, Any]],
    columns: list[str],
    as_json: bool,
    shown: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """ROWS as JSON (--json), else as a table of COLUMNS, each row first made readable by SHOWN if given."""
    if as_json:
        print_json(rows)
    else:
        print_table([shown(r) for r in rows] if shown else rows, columns)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table on stdout, the header in capitals."""
    cells = [[c.upper() for c in columns]] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
