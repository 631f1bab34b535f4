"""What the command lines share: every flag accepted with - or _ between its words."""

from __future__ import annotations

import argparse
import sys

SPELLING = "Each flag may also be spelled with - for _ or _ for - (--data-dir is --data_dir)."


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """The parser's flags and those of its subcommands."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= option_strings(sub)
    return found


def respell(argv: list[str], known: set[str]) -> list[str]:
    """argv with each --flag that is not known but whose other spelling is, written that way."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":  # what follows is not flags
            return out + argv[i:]
        flag, eq, value = arg.partition("=")
        if flag.startswith("--") and flag not in known:
            words = flag[2:]
            for other in (f"--{words.replace('-', '_')}", f"--{words.replace('_', '-')}"):
                if other in known:
                    flag = other
                    break
        out.append(flag + eq + value)
    return out


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parser.parse_args(argv), each flag accepted in either spelling; --help says so."""
    parser.epilog = f"{parser.epilog}\n{SPELLING}" if parser.epilog else SPELLING
    argv = sys.argv[1:] if argv is None else list(argv)
    return parser.parse_args(respell(argv, option_strings(parser)))
