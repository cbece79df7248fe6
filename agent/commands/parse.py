"""`agent parse`: show what the agent would do with one raw model reply.

The command a user reaches for when the agent clicked somewhere unexpected: paste
the recorded reply and the screen size, and see the reasoning, the validated action
and the input point it maps to.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.actions import action_point
from agent.commands.arguments import size
from agent.errors import GeometryError
from agent.geometry import ScreenGeometry
from agent.parsing import parse_reply


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "parse",
        help="parse one raw model reply from stdin and print the action as JSON",
        description="Read one raw model reply on stdin, validate it as the agent does, and print "
        "a JSON object with the keys thinking, action, point and dropped. When no action can "
        "run, the object has the keys status (truncated, no_action or invalid), thinking and "
        "dropped instead, the reason goes to stderr, and the exit status is 2.",
    )
    parser.add_argument(
        "--screen",
        required=True,
        type=size,
        metavar="WIDTHxHEIGHT",
        help="size of the screenshot the model saw, in pixels, for example 1920x1080",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="screenshot pixels per input point: 2 on a HiDPI screen (default: 1)",
    )
    parser.add_argument(
        "--origin",
        type=_origin,
        default=(0.0, 0.0),
        metavar="X,Y",
        help="input-point position of the screenshot's top-left corner (default: 0,0); "
        "write a negative origin with =, as in --origin=-1920,0",
    )
    parser.add_argument(
        "--thinking",
        action="store_true",
        help="the prompt opened <think>, as the Thinking model's does, so a reply "
        "without </think> was cut off",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    width, height = args.screen
    try:
        geometry = ScreenGeometry(width, height, args.scale, *args.origin)
    except GeometryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    parsed = parse_reply(sys.stdin.read(), thinking_opened=args.thinking)
    dropped = [{"reason": block.reason, "text": block.text} for block in parsed.dropped]
    if parsed.action is None:
        print(
            json.dumps(
                {"status": str(parsed.status), "thinking": parsed.thinking, "dropped": dropped},
                indent=2,
            )
        )
        print(f"error: {parsed.status}: {parsed.error}", file=sys.stderr)
        return 2

    grid = action_point(parsed.action)
    point = list(geometry.grid_to_point(*grid)) if grid else None
    output = {
        "thinking": parsed.thinking,
        "action": parsed.action.arguments(),
        "point": point,
        "dropped": dropped,
    }
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def _origin(text: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid origin {text!r}; write X,Y in input points, for example -1920,0"
        ) from None
    return x, y
