"""The `agent` command. Each subcommand lives in `agent.commands.<name>`.

A command module exposes `register(subparsers)`, which adds its parser and sets
`handler` to a function `(argparse.Namespace) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent.errors import AgentError

COMMANDS = ("run", "parse", "doctor", "replay", "report", "models")

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_ABORTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent",
        description="A local computer-use agent: Qwen3-VL models look at the screen and drive "
        "the mouse and keyboard, asking for approval where they should.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"agent.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Building the parser imports every command, which takes a moment, so Ctrl+C may come here.
        parser = build_parser()
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return EXIT_ABORTED
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE

    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return EXIT_ABORTED
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
