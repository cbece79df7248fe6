"""BrowserExecutor on real headless Chromium, against the pages in tests/pages.

Each test reads the target's position from the DOM in CSS pixels, converts it to
the 0..1000 grid of the latest screenshot, sends the action through the executor
and checks what the page recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from agent.actions import (
    Answer,
    HScroll,
    Key,
    LeftClick,
    LeftClickDrag,
    MouseMove,
    Scroll,
    Terminate,
    Type,
    Wait,
    parse_action,
)
from agent.errors import ConfigError
from agent.keys import NAMED_KEYS
from executors.base import Executor, Observation
from executors.browser import PLAYWRIGHT_KEYS, BrowserExecutor
from tests.fixtures_browser import PAGES_DIR

pytestmark = pytest.mark.timeout(60)

# Settle time for clicks that open a page. The page event ends the wait at once, so
# a long limit costs nothing and keeps a slow, loaded machine from missing the page.
OPENING_SETTLE_S = 3.0


def grid_of(
    observation: Observation, executor: BrowserExecutor, selector: str, dx: float = 0, dy: float = 0
) -> tuple[float, float]:
    """Return the grid point of an element's centre (plus an offset in CSS pixels)."""
    box = executor.page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not visible"
    x = box["x"] + box["width"] / 2 + dx
    y = box["y"] + box["height"] / 2 + dy
    return observation.geometry.point_to_grid(x, y)


def events(executor: BrowserExecutor, kind: str) -> list[dict[str, Any]]:
    return [event for event in executor.page.evaluate("window.events") if event["kind"] == kind]


@pytest.fixture(scope="module")
def shared_browser() -> Iterator[BrowserExecutor]:
    with BrowserExecutor(viewport=(1000, 700), settle_s=0.05) as executor:
        yield executor


@pytest.fixture
def actions_page(
    shared_browser: BrowserExecutor, pages_url: str
) -> tuple[BrowserExecutor, Observation]:
    """Open actions.html in the shared browser and return it with a fresh observation."""
    shared_browser.page.goto(pages_url + "actions.html")
    return shared_browser, shared_browser.observe()


def test_observe_reports_geometry_and_page(
    actions_page: tuple[BrowserExecutor, Observation],
) -> None:
    executor, observation = actions_page

    assert isinstance(executor, Executor)
    assert observation.image.mode == "RGB"
    assert observation.image.size == (1000, 700)
    assert (observation.geometry.width, observation.geometry.height) == (1000, 700)
    assert observation.geometry.scale == 1
    assert (observation.geometry.origin_x, observation.geometry.origin_y) == (0, 0)
    assert observation.extras["url"].endswith("/actions.html")
    assert observation.extras["title"] == "Executor actions"


def test_left_click_lands_on_target(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    box = executor.page.locator("#clicks").bounding_box()
    assert box is not None

    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#clicks"))
    )

    assert result.ok, result.reason
    assert result.point == (round(box["x"] + box["width"] / 2), round(box["y"] + box["height"] / 2))
    clicks = events(executor, "click")
    assert len(clicks) == 1
    assert (clicks[0]["x"], clicks[0]["y"]) == result.point
    assert clicks[0]["button"] == 0


@pytest.mark.parametrize(
    ("name", "kind", "button", "detail"),
    [
        ("right_click", "contextmenu", 2, None),
        ("middle_click", "auxclick", 1, None),
        ("double_click", "dblclick", 0, 2),
        ("triple_click", "click", 0, 3),
    ],
)
def test_other_clicks_send_right_events(
    actions_page: tuple[BrowserExecutor, Observation],
    name: str,
    kind: str,
    button: int,
    detail: int | None,
) -> None:
    executor, observation = actions_page
    action = parse_action(
        {"action": name, "coordinate": list(grid_of(observation, executor, "#clicks"))}
    )

    result = executor.execute(action)

    assert result.ok, result.reason
    matching = [
        event for event in events(executor, kind) if detail is None or event["detail"] == detail
    ]
    assert len(matching) == 1, executor.page.evaluate("window.events")
    assert matching[0]["button"] == button


def test_click_without_coordinate_uses_pointer(
    actions_page: tuple[BrowserExecutor, Observation],
) -> None:
    executor, observation = actions_page
    executor.execute(
        MouseMove(action="mouse_move", coordinate=grid_of(observation, executor, "#clicks", dx=30))
    )

    result = executor.execute(LeftClick(action="left_click"))

    assert result.ok, result.reason
    clicks = events(executor, "click")
    assert len(clicks) == 1
    assert (clicks[0]["x"], clicks[0]["y"]) == result.point


def test_mouse_move_reaches_point(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    coordinate = observation.geometry.point_to_grid(321, 456)

    result = executor.execute(MouseMove(action="mouse_move", coordinate=coordinate))

    assert result.ok
    assert result.point == (321, 456)
    assert executor.page.evaluate("window.lastMove") == {"x": 321, "y": 456}


def test_type_unicode_exactly(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    text = "café Ω 日本語 😀 <a href='x'>&amp; ~`|\\"
    executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#text"))
    )

    result = executor.execute(Type(action="type", text=text))

    assert result.ok
    assert executor.page.input_value("#text") == text


def test_type_crlf_gives_one_line_break(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#area"))
    )

    executor.execute(Type(action="type", text="first\r\nsecond\rthird\nfourth"))

    assert executor.page.input_value("#area") == "first\nsecond\nthird\nfourth"


def test_key_chord_selects_all(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#text"))
    )
    executor.execute(Type(action="type", text="replace me"))

    chord = executor.execute(Key(action="key", keys=["ctrl", "a"]))
    executor.execute(Type(action="type", text="new"))

    assert chord.ok, chord.reason
    assert executor.page.input_value("#text") == "new"
    control_a = [
        event for event in events(executor, "keydown") if event["key"] == "a" and event["ctrl"]
    ]
    assert len(control_a) == 1


def test_key_shift_chord_and_named_keys(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#text"))
    )

    executor.execute(Key(action="key", keys=["shift", "a"]))
    executor.execute(Key(action="key", keys=["shift", "1"]))
    executor.execute(Key(action="key", keys=["b"]))
    executor.execute(Key(action="key", keys=["left"]))
    executor.execute(Key(action="key", keys=["backspace"]))
    executor.execute(Key(action="key", keys=["é"]))
    executor.execute(Key(action="key", keys=["+"]))

    assert executor.page.input_value("#text") == "Aé+b"
    shifted = [event for event in events(executor, "keydown") if event["key"] == "A"]
    assert len(shifted) == 1
    assert shifted[0]["shift"] is True


def test_key_missing_from_layout_fails_clearly(
    actions_page: tuple[BrowserExecutor, Observation],
) -> None:
    executor, _ = actions_page

    result = executor.execute(Key(action="key", keys=["ctrl", "f13"]))

    assert not result.ok
    assert "'f13'" in result.reason


def test_every_mapped_key_is_accepted_by_playwright(
    actions_page: tuple[BrowserExecutor, Observation],
) -> None:
    executor, _ = actions_page
    unmapped = sorted(NAMED_KEYS - PLAYWRIGHT_KEYS.keys())

    for name in PLAYWRIGHT_KEYS.values():
        executor.page.keyboard.down(name)
        executor.page.keyboard.up(name)

    assert unmapped == sorted(f"f{n}" for n in range(13, 25))


def test_scroll_at_point_scrolls_that_element(
    actions_page: tuple[BrowserExecutor, Observation],
) -> None:
    executor, observation = actions_page
    at = grid_of(observation, executor, "#scroller")

    down = executor.execute(Scroll(action="scroll", pixels=-300, coordinate=at))
    executor.page.wait_for_function("document.getElementById('scroller').scrollTop === 300")
    up = executor.execute(Scroll(action="scroll", pixels=100))
    executor.page.wait_for_function("document.getElementById('scroller').scrollTop === 200")

    assert down.ok
    assert up.ok
    assert executor.page.evaluate("window.scrollY") == 0


def test_hscroll_at_point(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    at = grid_of(observation, executor, "#scroller")

    right = executor.execute(HScroll(action="hscroll", pixels=-250, coordinate=at))
    executor.page.wait_for_function("document.getElementById('scroller').scrollLeft === 250")
    left = executor.execute(HScroll(action="hscroll", pixels=50, coordinate=at))
    executor.page.wait_for_function("document.getElementById('scroller').scrollLeft === 200")

    assert right.ok
    assert left.ok


def test_drag_moves_mouse_event_handle(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    before = executor.page.locator("#handle").bounding_box()
    assert before is not None
    executor.execute(
        MouseMove(action="mouse_move", coordinate=grid_of(observation, executor, "#handle"))
    )

    result = executor.execute(
        LeftClickDrag(
            action="left_click_drag",
            coordinate=grid_of(observation, executor, "#handle", dx=150, dy=90),
        )
    )

    assert result.ok
    after = executor.page.locator("#handle").bounding_box()
    assert after is not None
    assert abs(after["x"] - before["x"] - 150) <= 1
    assert abs(after["y"] - before["y"] - 90) <= 1


def test_drag_html5_draggable_drops(actions_page: tuple[BrowserExecutor, Observation]) -> None:
    executor, observation = actions_page
    executor.execute(
        MouseMove(action="mouse_move", coordinate=grid_of(observation, executor, "#source"))
    )

    executor.execute(
        LeftClickDrag(
            action="left_click_drag", coordinate=grid_of(observation, executor, "#dropzone")
        )
    )

    assert events(executor, "drop") == [{"kind": "drop", "data": "source"}]


def test_final_actions_and_wait_touch_nothing(
    actions_page: tuple[BrowserExecutor, Observation],
) -> None:
    executor, _ = actions_page

    results = [
        executor.execute(Wait(action="wait", time=0.1)),
        executor.execute(Terminate(action="terminate", status="success")),
        executor.execute(Answer(action="answer", text="42")),
    ]

    assert all(result.ok for result in results)
    assert all(result.point is None for result in results)
    assert executor.page.evaluate("window.events") == []


@pytest.fixture(scope="module")
def hidpi_browser() -> Iterator[BrowserExecutor]:
    with BrowserExecutor(viewport=(1000, 700), device_scale_factor=2, settle_s=0.05) as executor:
        yield executor


@pytest.fixture
def hidpi_page(hidpi_browser: BrowserExecutor, pages_url: str) -> BrowserExecutor:
    hidpi_browser.page.goto(pages_url + "actions.html")
    return hidpi_browser


def test_scale_factor_two_click_hits_css_pixel(hidpi_page: BrowserExecutor) -> None:
    executor = hidpi_page
    observation = executor.observe()

    assert observation.image.size == (2000, 1400)
    assert observation.geometry.scale == 2
    moved = executor.execute(
        MouseMove(action="mouse_move", coordinate=observation.geometry.point_to_grid(321, 456))
    )
    assert moved.point == (321, 456)
    assert executor.page.evaluate("window.lastMove") == {"x": 321, "y": 456}


def test_scale_factor_two_marker_found_in_screenshot(hidpi_page: BrowserExecutor) -> None:
    executor = hidpi_page
    observation = executor.observe()
    pixels = np.asarray(observation.image)
    red = (pixels[:, :, 0] > 240) & (pixels[:, :, 1] < 20) & (pixels[:, :, 2] < 20)
    rows, columns = np.nonzero(red)
    # The marker is 12x12 CSS pixels at (901, 613): 24x24 screenshot pixels at (1802, 1226).
    assert (columns.min(), rows.min(), columns.max(), rows.max()) == (1802, 1226, 1825, 1249)

    centre = observation.geometry.pixel_to_grid(
        (columns.min() + columns.max()) / 2, (rows.min() + rows.max()) / 2
    )
    result = executor.execute(LeftClick(action="left_click", coordinate=centre))

    hits = events(executor, "marker")
    assert len(hits) == 1
    assert abs(hits[0]["x"] - 907) <= 1
    assert abs(hits[0]["y"] - 619) <= 1
    assert result.point == (hits[0]["x"], hits[0]["y"])


@pytest.mark.parametrize(("selector", "via"), [("#blank", "blank"), ("#open", "open")])
def test_click_opening_page_switches(
    make_browser: Callable[..., BrowserExecutor], pages_url: str, selector: str, via: str
) -> None:
    executor = make_browser(pages_url + "popups.html", settle_s=OPENING_SETTLE_S)
    observation = executor.observe()

    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, selector))
    )

    assert result.ok, result.reason
    assert result.new_page
    assert executor.page.url == f"{pages_url}target.html?via={via}"
    after = executor.observe()
    assert after.extras["title"] == "Target page"
    assert "new_page" not in after.extras


def test_delayed_page_reported_by_wait(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    executor = make_browser(pages_url + "popups.html", settle_s=0.05)
    observation = executor.observe()

    click = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#delayed"))
    )
    wait = executor.execute(Wait(action="wait", time=1.5))

    assert click.ok
    assert not click.new_page
    assert wait.new_page
    assert executor.page.url.endswith("target.html?via=delayed")


def test_delayed_page_reported_by_observe(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    executor = make_browser(pages_url + "popups.html", settle_s=0.05)
    observation = executor.observe()

    executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#delayed"))
    )
    time.sleep(1.5)
    after = executor.observe()

    assert after.extras["new_page"] == "true"
    assert after.extras["url"].endswith("target.html?via=delayed")
    assert after.extras["title"] == "Target page"


def test_same_page_link_is_no_new_page(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    executor = make_browser(pages_url + "popups.html")
    observation = executor.observe()

    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#same"))
    )

    assert result.ok
    assert not result.new_page
    assert executor.observe().extras["title"] == "Target page"


def test_closed_page_falls_back_to_opener(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    executor = make_browser(pages_url + "popups.html", settle_s=OPENING_SETTLE_S)
    observation = executor.observe()
    executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#open"))
    )

    executor.page.close()
    after = executor.observe()

    assert after.extras["title"] == "Popups"


def test_allow_list_permits_matching_link(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    executor = make_browser(pages_url + "navigation.html", allowed_urls=[pages_url + "*"])
    observation = executor.observe()

    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#inside"))
    )

    assert result.ok, result.reason
    assert executor.observe().extras["url"].endswith("target.html?via=inside")


@pytest.mark.parametrize("selector", ["#outside", "#outside-popup"])
def test_allow_list_blocks_other_urls(
    make_browser: Callable[..., BrowserExecutor], pages_url: str, selector: str
) -> None:
    executor = make_browser(
        pages_url + "navigation.html", allowed_urls=[re.compile(re.escape(pages_url) + ".*")]
    )
    observation = executor.observe()

    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, selector))
    )

    assert not result.ok
    assert not result.new_page
    assert "blocked" in result.reason
    assert "localhost" in result.reason
    assert executor.page.url == pages_url + "navigation.html"
    assert executor.observe().extras["title"] == "Navigation"


def test_allow_list_checks_file_urls(make_browser: Callable[..., BrowserExecutor]) -> None:
    start = (PAGES_DIR / "navigation.html").as_uri()
    executor = make_browser(start, allowed_urls=[start])
    observation = executor.observe()

    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#inside"))
    )

    assert not result.ok
    assert "target.html?via=inside was blocked" in result.reason
    assert executor.page.url == start


def test_allow_list_rejects_start_url() -> None:
    executor = BrowserExecutor("http://127.0.0.1:9/", allowed_urls=["http://localhost:9/*"])

    with pytest.raises(ConfigError, match="matches none of the allowed URL patterns"):
        executor.start()


def test_two_executors_share_one_thread(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    first = make_browser(pages_url + "target.html?via=first")
    second = make_browser(pages_url + "target.html?via=second")

    assert first.page.inner_text("#via") == "first"
    assert second.page.inner_text("#via") == "second"
    first.close()
    assert second.observe().extras["title"] == "Target page"


def test_zero_settle_time_does_not_block(
    make_browser: Callable[..., BrowserExecutor], pages_url: str
) -> None:
    executor = make_browser(pages_url + "actions.html", settle_s=0)
    observation = executor.observe()

    started = time.monotonic()
    result = executor.execute(
        LeftClick(action="left_click", coordinate=grid_of(observation, executor, "#clicks"))
    )

    assert result.ok
    assert time.monotonic() - started < 2
    assert len(events(executor, "click")) == 1


def test_invalid_viewport_rejected() -> None:
    with pytest.raises(ConfigError, match="viewport"):
        BrowserExecutor(viewport=(0, 600))
