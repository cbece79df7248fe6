"""Send log records into the TUI's log pane instead of stdout or stderr.

While the TUI owns the terminal, any write to stdout or stderr corrupts the screen,
so `captured_logging` swaps the root logger's stream handlers for one that posts each
formatted record to the app as a message. Textual documents `post_message` as
thread-safe, and it only queues the message, so the loop's worker thread can log freely.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from textual.app import App
from textual.message import Message


class LogLine(Message):
    """One formatted log record for the log pane."""

    def __init__(self, text: str, level: int) -> None:
        super().__init__()
        self.text = text
        self.level = level


class AppLogHandler(logging.Handler):
    """A logging handler that posts each record to a running Textual app as a `LogLine`."""

    def __init__(self, app: App[Any], level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._app = app
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except (TypeError, ValueError):
            self.handleError(record)
            return
        # post_message returns False once the app has closed; such records are dropped.
        self._app.post_message(LogLine(text, record.levelno))


@contextmanager
def captured_logging(app: App[Any], level: int | None = None) -> Iterator[AppLogHandler]:
    """Route root log records to `app` for the duration, restoring the stream handlers after.

    Only stream handlers writing to stdout or stderr are removed; file handlers
    stay. `level` sets the root level while captured; None keeps the current one.
    """
    root = logging.getLogger()
    removed = [handler for handler in root.handlers if _writes_to_terminal(handler)]
    for handler in removed:
        root.removeHandler(handler)
    handler = AppLogHandler(app)
    root.addHandler(handler)
    previous_level = root.level
    if level is not None:
        root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        for old in removed:
            root.addHandler(old)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
        return False
    return handler.stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
