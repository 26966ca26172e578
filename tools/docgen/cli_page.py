"""docs/reference/cli.md: every `ganworks` command and subcommand with its flags, from the parsers the commands build."""

from __future__ import annotations

import argparse
import importlib

from tools.docgen.common import banner, cell, code, table


def _flags(parser: argparse.ArgumentParser) -> list[list[str]]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(action.option_strings) or action.dest
        if action.option_strings and action.nargs != 0:
            names += " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
        default = action.default
        default = "" if default in (None, argparse.SUPPRESS, False) or (action.nargs == 0 and default is False) else default
        choices = ", ".join(map(str, action.choices)) if action.choices else ""
        help_text = formatter._expand_help(action) if action.help else ""
        rows.append([code(names), code(default), cell(choices), cell(help_text)])
    return rows


def _section(out: list[str], title: str, parser: argparse.ArgumentParser, level: int) -> None:
    out.append(f"{'#' * level} `{title}`\n")
    if parser.description:
        out.append(cell(parser.description) + "\n")
    rows = _flags(parser)
    if rows:
        header = ["flag", "default", "choices", "meaning"]
        # A column no flag fills (most flags say their default in their help) is left out.
        keep = [i for i in range(len(header)) if i in (0, 3) or any(row[i] for row in rows)]
        out.append(table([header[i] for i in keep], [[row[i] for i in keep] for row in rows]))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    sub.description = helps[name]
                _section(out, f"{title} {name}", sub, level + 1)


def render() -> str:
    from ganworks import cli

    out = [banner("the argparse parsers of `ganworks/cli.py` and each command's `configure`"), "# Command line\n",
           "Every command is `ganworks [--log-level LEVEL] COMMAND ...`. Flags override `GANWORKS_*` environment "
           "variables, which override the defaults ([settings](settings.md)). Exit codes: 0 done, 1 the service "
           "answered but the work failed, 2 bad input, 130 interrupted.\n"]
    out.append(table(["command", "what it does"], [[f"[`{n}`](#ganworks-{n})", cell(text)] for n, (_, text) in cli.COMMANDS.items()]))
    for name, (module_name, text) in cli.COMMANDS.items():
        parser = argparse.ArgumentParser(prog=f"ganworks {name}", description=text)
        importlib.import_module(module_name).configure(parser)
        _section(out, f"ganworks {name}", parser, 2)
    return "\n".join(out)
