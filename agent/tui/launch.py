"""Start the TUI for one run: the entry point `agent run` calls.

The caller passes a function that builds the executor and the recorder and runs the
loop to its end. The TUI calls it on its worker thread, so the executor must be
started inside that function: Playwright's sync API raises "Cannot switch to a
different thread" when a page is used from a thread other than the one that opened it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from agent.approval import ApprovalHook
from agent.cli import EXIT_INCOMPLETE
from agent.control import RunControl
from agent.steps import RunOutcome
from agent.tui.app import AgentApp, EventSink, Finished
from agent.tui.bridge import Policy
from agent.tui.events import exit_code, summarise
from agent.tui.logs import captured_logging
from agent.tui.screenshot import detect_graphics

logger = logging.getLogger(__name__)

RunTask = Callable[[ApprovalHook, RunControl, EventSink], RunOutcome]
"""Builds what the loop needs, runs it with the given hook, control and event sink, and
returns the outcome. It must close the executor and the recording before it returns."""

# Loggers whose INFO records (one per executed action, run start and end) the log pane shows.
_SHOWN_LOGGERS = ("agent", "executors")


def tui_available() -> bool:
    """Tell whether stdin and stdout are both terminals, so the TUI can take over the screen."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_with_tui(task: str, run_task: RunTask, *, policy: Policy = Policy.ALWAYS) -> int:
    """Run `run_task` under the TUI and return the exit code: 0, 1 or 130.

    The app stays open after the run ends so the person can read the result, until q.
    """
    graphics = detect_graphics()

    def start(approval: ApprovalHook, control: RunControl, on_event: EventSink) -> Finished:
        outcome = run_task(approval, control, on_event)
        return Finished(exit_code(outcome), summarise(outcome))

    app = AgentApp(task, start, policy=policy, graphics=graphics)
    with captured_logging(app), _loggers_at_info():
        code = app.run()
    if app.finished is not None:
        print(app.finished.message)
    return EXIT_INCOMPLETE if code is None else code


@contextmanager
def _loggers_at_info() -> Iterator[None]:
    """Lower the project's loggers to INFO while the log pane shows them, unless already lower."""
    loggers = [logging.getLogger(name) for name in _SHOWN_LOGGERS]
    previous = [item.level for item in loggers]
    for item in loggers:
        if item.getEffectiveLevel() > logging.INFO:
            item.setLevel(logging.INFO)
    try:
        yield
    finally:
        for item, level in zip(loggers, previous, strict=True):
            item.setLevel(level)
