"""`lantern` — one command, one small module per subcommand."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import NoReturn

from lantern.errors import LanternError

# Subcommand modules under lantern.cli; each defines add_parser(subparsers) and run(args).
COMMANDS = ("train", "lr_find", "generate", "chat", "eval", "info", "data", "tokenizer", "serve",
            "export", "push", "trm", "pull", "convert")


class CommandParser(argparse.ArgumentParser):
    """argparse whose refusals (an unknown flag, a missing argument, a bad type) are one
    `lantern: error:` line like every other refusal, instead of a usage block; exit status 2
    as argparse's. Subcommand parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("lantern").strip()
        where = f"{command}: " if command else ""
        help_hint = f"lantern {command} --help" if command else "lantern --help"
        self.exit(2, f"lantern: error: {where}{message} (see {help_hint})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="lantern",
        description="Build, train, run and study small language models.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lantern.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except LanternError as exc:
        print(f"lantern: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lantern: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lantern info run | head -5`: the reader left, that is all
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"lantern: error: {os_reason(exc)}", file=sys.stderr)
        return 1


def os_reason(exc: OSError) -> str:
    """One line for an operating-system error: what went wrong, and on which file."""
    reasons = {errno.ENOSPC: "no space left on the device",
               errno.EFBIG: "file too large (a file-size limit was reached)"}
    reason = reasons.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


if __name__ == "__main__":
    sys.exit(main())
