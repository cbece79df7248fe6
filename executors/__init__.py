"""Executors: carry out actions on a browser page or an X11 desktop.

The executor classes are imported on first use, so `import executors` loads
neither Playwright nor pyautogui, and works without a display.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from executors.base import ExecutionResult, Executor, Observation

if TYPE_CHECKING:
    from executors.browser import BrowserExecutor
    from executors.desktop import DesktopExecutor, RunStoppedError
    from executors.fake import FakeExecutor

_LAZY = {
    "BrowserExecutor": "executors.browser",
    "DesktopExecutor": "executors.desktop",
    "RunStoppedError": "executors.desktop",
    "FakeExecutor": "executors.fake",
}

__all__ = [
    "BrowserExecutor",
    "DesktopExecutor",
    "ExecutionResult",
    "Executor",
    "FakeExecutor",
    "Observation",
    "RunStoppedError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'executors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
