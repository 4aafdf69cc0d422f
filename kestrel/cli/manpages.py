"""Man pages (section 8), one per program, written from the click commands themselves: the options, the
subcommands and their help are the ones -h shows. `python -m kestrel.cli.manpages DIR` writes them and
prints each path (setup.sh installs them); docs/man holds the committed copies, kept equal by a test."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import sys
from pathlib import Path

import click

from kestrel.cli import common
from kestrel.cli.completion import program_commands

SECTION = "8"


def escape(text: str) -> str:
    """TEXT safe inside roff: backslashes and hyphens escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(f"\\&{line}" if line.startswith((".", "'")) else line for line in text.splitlines())


def _paragraphs(help_text: str | None) -> list[str]:
    text = inspect.cleandoc(help_text or "").replace("\b\n", "")
    return [p.strip("\n") for p in text.split("\n\n") if p.strip()]


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{escape(names)}\\fR", escape(help_text) or "\\&"]
    return out


def _usage(command: click.Command, ctx: click.Context) -> str:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    return f"\\fB{escape(ctx.command_path)}\\fR {escape(pieces)}".rstrip()


def _subcommands(group: click.Group, ctx: click.Context) -> list[str]:
    out: list[str] = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        with click.Context(sub, info_name=name, parent=ctx) as sub_ctx:
            out += [".SS", _usage(sub, sub_ctx)]
            for i, paragraph in enumerate(_paragraphs(sub.help)):
                out += ([".PP"] if i else []) + [escape(paragraph)]
            out += _options(sub, sub_ctx)
            if isinstance(sub, click.Group):
                out += _subcommands(sub, sub_ctx)
    return out


def render_page(name: str, command: click.Command, others: list[str]) -> str:
    """The man page of program NAME (its click COMMAND); SEE ALSO names the OTHERS."""
    with click.Context(command, info_name=name, help_option_names=common.HELP_OPTIONS) as ctx:
        paragraphs = _paragraphs(command.help)
        summary = paragraphs[0].split("\n")[0].split(". ")[0].rstrip(".") if paragraphs else name
        version = md.version("kestrel")
        lines = [
            f'.TH {name.upper()} {SECTION} "" "Kestrel {version}" "Kestrel Manual"',
            ".SH NAME",
            f"{escape(name)} \\- {escape(summary)}",
            ".SH SYNOPSIS",
            _usage(command, ctx),
            ".SH DESCRIPTION",
        ]
        for i, paragraph in enumerate(paragraphs):
            lines += ([".PP"] if i else []) + [escape(paragraph)]
        lines += [".SH OPTIONS", *_options(command, ctx)]
        if isinstance(command, click.Group):
            lines += [".SH COMMANDS", *_subcommands(command, ctx)]
        lines += [".SH SEE ALSO", ",\n".join(f"\\fB{escape(o)}\\fR({SECTION})" for o in others)]
    return "\n".join(lines) + "\n"


def render_pages() -> dict[str, str]:
    """File name (PROGRAM.8) -> page, for every program."""
    programs = program_commands()
    return {
        f"{name}.{SECTION}": render_page(name, command, [o for o in sorted(programs) if o != name])
        for name, command in sorted(programs.items())
    }


def write_pages(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, page in render_pages().items():
        path = folder / file_name
        path.write_text(page)
        written.append(path)
    return written


if __name__ == "__main__":
    for written in write_pages(Path(sys.argv[1])):
        print(written)
