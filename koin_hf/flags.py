"""One convention for every command-line parser in koin-hf.

Flags are spelled with underscores, as transformers' `TrainingArguments` (and so train.py) spell
them; the hyphenated spelling is accepted as an alias, as `HfArgumentParser` accepts it.
Abbreviations are refused: argparse would otherwise take `--learning_rat` for `--learning_rate`
without a word. An unknown flag gets one line naming it and the nearest real flag.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping, Sequence
from typing import Any


def spellings(names: Sequence[str]) -> list[str]:
    """The option strings for `names`: the underscore spelling first, then the hyphenated alias."""
    result: list[str] = []
    for name in names:
        if name.startswith("--") and ("_" in name[2:] or "-" in name[2:]):
            body = name[2:]
            candidates = [f"--{body.replace('-', '_')}", f"--{body.replace('_', '-')}"]
        else:
            candidates = [name]
        result += [option for option in candidates if option not in result]
    return result


def unknown_arguments_message(
    unknown: Sequence[str],
    known_flags: Sequence[str],
    *,
    help_command: str,
    removed: Mapping[str, str] | None = None,
    where: str = "on the command line",
) -> str:
    """One line naming each argument a parser does not take, with the nearest real flag."""
    removed = removed or {}
    parts = []
    index = 0
    while index < len(unknown):
        argument = unknown[index]
        index += 1
        if not argument.startswith("-"):
            parts.append(f"{argument!r} (a value without a flag)")
            continue
        flag = argument.split("=", 1)[0]
        while "=" not in argument and index < len(unknown) and not unknown[index].startswith("-"):
            index += 1  # the unknown flag's own value(s): not more mistakes
        if flag in removed:
            parts.append(f"{flag} ({removed[flag]})")
        else:
            close = difflib.get_close_matches(flag, list(known_flags), n=1, cutoff=0.75)
            parts.append(f"{flag}" + (f" (did you mean {close[0]}?)" if close else ""))
    return f"unknown argument(s) {where}: {'; '.join(parts)}. See `{help_command} --help`."


class KoinArgumentParser(argparse.ArgumentParser):
    """argparse with koin-hf's flag convention: both spellings, no abbreviations, helpful errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*spellings(names), **kwargs)

    def error(self, message: str):
        """One line, `prog: error: message`, exit code 2, as train.py's parser and every
        KoinError: argparse's default would print the whole usage block above it."""
        if "--help" not in message:
            message = f"{message} (see `{self.prog} --help`)"
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(
                unknown_arguments_message(
                    unknown, list(self._option_string_actions), help_command=self.prog
                )
            )
        return parsed
