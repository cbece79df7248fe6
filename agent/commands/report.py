"""`agent report REC [-o FILE]`: write a recording's HTML report.

Exit codes: 0 the report was written, 2 the recording is missing or invalid, or the
output file cannot be written (`agent.cli.main` turns those errors into exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.cli import EXIT_OK
from agent.commands.arguments import positive_int
from agent.recording import Recording
from agent.report import DEFAULT_NAME, MAX_IMAGE_WIDTH, write_report
from agent.steps import steps_text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a recording's HTML report",
        description="Write one self-contained HTML file that shows recording REC step by step: "
        "each screenshot with the action's target drawn on it, the reasoning, the action, "
        "the approval and the timings.",
    )
    parser.add_argument(
        "recording", type=Path, metavar="REC", help="recording directory written by `agent run`"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help=f"HTML file to write (default: REC/{DEFAULT_NAME})",
    )
    parser.add_argument(
        "--image-width",
        type=positive_int,
        default=MAX_IMAGE_WIDTH,
        metavar="PX",
        help=f"downscale wider screenshots to this width in pixels (default: {MAX_IMAGE_WIDTH})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    recording = Recording.open(args.recording)
    path = write_report(recording, args.output, max_image_width=args.image_width)
    print(f"Wrote the report of {steps_text(len(recording.steps))} to {path}")
    return EXIT_OK
