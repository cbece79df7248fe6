"""Pause, resume and abort a running loop from another thread (the TUI or a signal handler)."""

from __future__ import annotations

import threading


class RunAborted(Exception):
    """Raised inside the loop when the person aborted the run. The loop ends the recording cleanly."""


class RunControl:
    """Thread-safe flags the loop checks between the phases of each step."""

    def __init__(self) -> None:
        self._aborted = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def abort(self) -> None:
        self._aborted.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self) -> None:
        """Block while paused; raise `RunAborted` once aborted."""
        while not self._running.wait(timeout=0.1):
            pass
        if self._aborted.is_set():
            raise RunAborted("the run was aborted")

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake and raise `RunAborted` within 0.1 s of an abort."""
        if self._aborted.wait(timeout=seconds):
            raise RunAborted("the run was aborted")
