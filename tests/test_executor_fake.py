"""The shipped fake executor: the test double other parts' tests rely on."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.actions import LeftClick, Type, parse_action
from agent.errors import ExecutorError
from agent.geometry import ScreenGeometry
from executors.base import ExecutionResult, Executor
from executors.fake import FakeExecutor

CLICK = parse_action({"action": "left_click", "coordinate": [500, 500]})


def test_fake_follows_protocol() -> None:
    assert isinstance(FakeExecutor(), Executor)


def test_images_served_in_order_last_repeats() -> None:
    images = [Image.new("RGB", (40, 30), (index, 0, 0)) for index in range(2)]
    executor = FakeExecutor(images)

    colours = [executor.observe().image.getpixel((0, 0)) for _ in range(4)]

    assert colours == [(0, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0)]


def test_default_image_follows_geometry() -> None:
    geometry = ScreenGeometry(2560, 1600, scale=2, origin_x=-1280)
    observation = FakeExecutor(geometry=geometry).observe()

    assert observation.image.size == (2560, 1600)
    assert observation.geometry == geometry


def test_actions_recorded_with_mapped_point() -> None:
    executor = FakeExecutor(geometry=ScreenGeometry(2560, 1600, scale=2))
    executor.observe()

    result = executor.execute(CLICK)

    assert executor.actions == [LeftClick(action="left_click", coordinate=(500, 500))]
    assert result.ok
    assert result.point == (640, 400)


def test_scripted_results_then_success() -> None:
    executor = FakeExecutor(results=[ExecutionResult.failed("button is disabled")])

    first = executor.execute(CLICK)
    second = executor.execute(CLICK)

    assert not first.ok
    assert first.reason == "button is disabled"
    assert second.ok


def test_result_function_sees_action() -> None:
    def judge(action: object) -> ExecutionResult:
        return ExecutionResult.done() if isinstance(action, Type) else ExecutionResult.failed("no")

    executor = FakeExecutor(results=judge)

    assert executor.execute(parse_action({"action": "type", "text": "hi"})).ok
    assert not executor.execute(CLICK).ok


def test_closed_fake_rejects_calls() -> None:
    with FakeExecutor(extras={"url": "about:blank"}) as executor:
        assert executor.observe().extras == {"url": "about:blank"}

    assert executor.closed
    with pytest.raises(ExecutorError, match="closed"):
        executor.observe()
