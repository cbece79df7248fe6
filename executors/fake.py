"""A test double for the executor seam, shipped so tests of other parts need no screen.

`FakeExecutor` serves screenshots from a list, records every action it is given,
and returns scripted results. It maps coordinates through the same
`ScreenGeometry` as the real executors, so a test can check the input point an
action would have reached.

    fake = FakeExecutor(images=[first, second], results=[ExecutionResult.failed("blocked")])
    with fake:
        observation = fake.observe()      # serves `first`
        fake.execute(action)              # returns the scripted failure
        fake.execute(action)              # no script left: done, with the mapped point
    assert fake.actions == [action, action]

Results may also be computed by a function `(action) -> ExecutionResult`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from PIL import Image

from agent.actions import Action, action_point
from agent.errors import ExecutorError
from agent.geometry import ScreenGeometry
from executors.base import ExecutionResult, Observation

ResultScript = Sequence[ExecutionResult] | Callable[[Action], ExecutionResult]


class FakeExecutor:
    """Serves given images and records actions instead of driving a screen.

    - `images`: screenshots served by `observe()` in order. The last one repeats
      once the list is used up. Without images, a solid `color` image of `size`,
      or of the geometry's size when `geometry` is given.
    - `geometry`: the geometry of every observation. By default it is the image's
      size with scale 1 and origin (0, 0).
    - `results`: results returned by `execute()` in order, or a function that
      computes one per action. Once a list is used up, actions succeed.
    - `extras`: extras of every observation, for example `{"url": ...}`.

    `actions` and `observations` record the calls, and `closed` is true once the
    context manager has exited.
    """

    name = "fake"

    def __init__(
        self,
        images: Sequence[Image.Image] = (),
        *,
        size: tuple[int, int] = (1280, 800),
        color: tuple[int, int, int] = (255, 255, 255),
        geometry: ScreenGeometry | None = None,
        results: ResultScript = (),
        extras: dict[str, str] | None = None,
    ) -> None:
        self._images = deque(image.convert("RGB") for image in images)
        if not self._images:
            if geometry is not None:
                size = (geometry.width, geometry.height)
            self._images.append(Image.new("RGB", size, color))
        self._geometry = geometry
        self._results: Callable[[Action], ExecutionResult] | deque[ExecutionResult]
        self._results = results if callable(results) else deque(results)
        self._extras = dict(extras or {})
        self.actions: list[Action] = []
        self.observations: list[Observation] = []
        self.closed = False

    def observe(self) -> Observation:
        """Return the next image with its geometry; the last image repeats."""
        self._check_open()
        image = self._images.popleft() if len(self._images) > 1 else self._images[0]
        geometry = self._geometry or ScreenGeometry(image.width, image.height)
        observation = Observation(
            image=image, geometry=geometry, timestamp=time.time(), extras=dict(self._extras)
        )
        self.observations.append(observation)
        return observation

    def execute(self, action: Action) -> ExecutionResult:
        """Record the action and return the next scripted result, or success at the mapped point."""
        self._check_open()
        self.actions.append(action)
        if callable(self._results):
            return self._results(action)
        if self._results:
            return self._results.popleft()
        return ExecutionResult.done(point=self._point(action))

    def _point(self, action: Action) -> tuple[int, int] | None:
        grid_point = action_point(action)
        if grid_point is None:
            return None
        return self._current_geometry().grid_to_point(*grid_point)

    def _current_geometry(self) -> ScreenGeometry:
        if self.observations:
            return self.observations[-1].geometry
        image = self._images[0]
        return self._geometry or ScreenGeometry(image.width, image.height)

    def _check_open(self) -> None:
        if self.closed:
            raise ExecutorError("the fake executor is closed; create a new one")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.closed = True
