"""The executor seam: observe the screen, carry out one action.

An executor owns one target (a browser page, an X11 monitor). `observe()` captures
it; `execute(action)` maps the action's 0..1000 grid coordinates through the
geometry of the latest observation and performs it with real input events.
Approval, retries and recording wrap executors; they never live inside one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from PIL import Image

from agent.actions import Action
from agent.geometry import ScreenGeometry


@dataclass(frozen=True)
class Observation:
    """One capture of the target: an RGB screenshot, its geometry and facts about the target."""

    image: Image.Image
    geometry: ScreenGeometry
    timestamp: float = field(default_factory=time.time)
    # For example "url" and "title" in a browser, "window_title" on a desktop.
    extras: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionResult:
    """The result of one action an executor carried out."""

    ok: bool
    reason: str = ""
    # The input point the action was sent to, for actions with a coordinate.
    point: tuple[int, int] | None = None
    # True when the action opened a new page and the executor switched to it.
    new_page: bool = False
    extras: dict[str, str] = field(default_factory=dict)

    @classmethod
    def done(cls, point: tuple[int, int] | None = None, **extras: str) -> ExecutionResult:
        return cls(ok=True, point=point, extras=dict(extras))

    @classmethod
    def failed(cls, reason: str, point: tuple[int, int] | None = None) -> ExecutionResult:
        return cls(ok=False, reason=reason, point=point)


@runtime_checkable
class Executor(Protocol):
    """Drives one screen or page. Use it as a context manager so it always closes."""

    name: str

    def observe(self) -> Observation:
        """Capture the target as it is now."""
        ...

    def execute(self, action: Action) -> ExecutionResult:
        """Carry out one action, mapped through the latest observation's geometry."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
