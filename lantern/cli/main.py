"""`lantern` — one command, one small module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

from lantern.errors import LanternError

# Subcommand modules under lantern.cli; each defines add_parser(subparsers) and run(args).
COMMANDS = ("train", "generate", "chat", "info", "data", "tokenizer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as exc:
        print(f"lantern: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            print("lantern: error: no space left on the device", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
