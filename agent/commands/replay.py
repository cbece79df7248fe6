"""`agent replay REC`: run a recording's model replies through the loop again.

The executor starts as recorded, the recorded replies and approvals drive the loop,
and the command reports the first step where the replay differs from the recording.
For MiniWoB++ recordings it also prints the episode's raw reward.

Exit codes: 0 the replay matched the recording (for a recording of a run that did not
finish or was aborted during a step, every step before that), 1 it diverged, 2 the
recording or an option is invalid, or the executor could not start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from agent.cli import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from agent.commands.run import read_secrets
from agent.errors import AgentError, ConfigError, ExecutorError, RecordingError
from agent.recording import Recording
from agent.replay import ReplayResult, replay_recording


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a recording against a live executor and report where it diverges",
        description="Run the model replies of recording REC through the agent loop against an "
        "executor started as recorded, and report the first step that differs.",
    )
    parser.add_argument(
        "recording", type=Path, metavar="REC", help="recording directory written by `agent run`"
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="write the replay's own recording to DIR (default: a temporary folder)",
    )
    parser.add_argument(
        "--headed", action="store_true", help="show the browser window (needs an X display)"
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="value of a recorded secret, read from the environment variable NAME or a prompt",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        recording = Recording.open(args.recording)
        secrets = read_secrets(args.secret) if args.secret else None
    except (ConfigError, RecordingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    with tempfile.TemporaryDirectory(prefix="agent-replay-") as scratch:
        record_dir = args.record or Path(scratch) / "replay"
        try:
            result = replay_recording(
                recording, record_dir=record_dir, secrets=secrets, headless=not args.headed
            )
        except (ConfigError, RecordingError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (ExecutorError, AgentError) as exc:
            print(f"error: the replay could not start: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print_result(result, keep=args.record is not None)
    return EXIT_OK if result.matched else EXIT_INCOMPLETE


def print_result(result: ReplayResult, *, keep: bool) -> None:
    matched = _matched_steps(result.recorded_steps)
    if result.divergence is None and result.unfinished_reason is not None:
        print(
            f"Replay matched {matched}; the recording ends there because "
            f"{result.unfinished_reason}."
        )
    elif result.divergence is None:
        print(f"Replay matched {matched}; the run ended with {result.outcome.status}.")
    else:
        print(f"Replay diverged at {result.divergence.describe()}.")
    if "raw_reward" in result.evaluation:
        reward = result.evaluation["raw_reward"]
        print(f"MiniWoB++ raw reward: {'not finished' if reward is None else f'{reward:g}'}")
    if keep:
        print(f"Replay recording: {result.record_dir}")


def _matched_steps(count: int) -> str:
    if count == 0:
        return "the recording, which has no steps"
    if count == 1:
        return "the 1 recorded step"
    return f"all {count} recorded steps"
