"""The terminal UI that shows each step of a run and requests the person's approval.

`agent run` calls `run_with_tui` when `tui_available()` reports an interactive terminal.
"""

from agent.tui.bridge import Policy
from agent.tui.launch import RunTask, run_with_tui, tui_available

__all__ = ["Policy", "RunTask", "run_with_tui", "tui_available"]
