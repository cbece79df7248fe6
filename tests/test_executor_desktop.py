"""DesktopExecutor on a real X server (Xvfb), driving the Tk app in tests/apps.

Each test aims at a widget using the screen box the app reports, converts it to
the 0..1000 grid of the latest screenshot, sends the action through the executor
and checks the state the app wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from agent.control import RunAborted
from agent.errors import ConfigError, ExecutorError
from agent.keys import NAMED_KEYS
from executors.base import Executor, Observation
from executors.desktop import XDOTOOL_KEYS, DesktopExecutor, RunStoppedError, _pick_monitor
from tests.fixtures_display import XDisplay

pytestmark = pytest.mark.timeout(60)

APP = Path(__file__).parent / "apps" / "tk_app.py"
REPOSITORY = Path(__file__).parent.parent


class TkApp:
    """The running Tk test app and the state it last wrote."""

    def __init__(self, process: subprocess.Popen[bytes], state_path: Path) -> None:
        self.process = process
        self.state_path = state_path

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
    ) -> dict[str, Any]:
        """Poll the state until `condition` holds; fail with the last state otherwise."""
        deadline = time.monotonic() + timeout_s
        state = self.state()
        while not condition(state):
            if self.process.poll() is not None:
                raise AssertionError(f"the Tk app exited with status {self.process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"app state never met the condition: {state}")
            time.sleep(0.02)
            state = self.state()
        return state

    def centre(self, widget: str, dx: float = 0, dy: float = 0) -> tuple[float, float]:
        """Return the screen point at the centre of a widget, plus an offset in pixels."""
        x, y, width, height = self.state()["widgets"][widget]
        return x + width / 2 + dx, y + height / 2 + dy


@pytest.fixture(scope="module")
def desktop(x_display: XDisplay) -> Iterator[DesktopExecutor]:
    with DesktopExecutor(quiet_s=0.1) as executor:
        yield executor


@pytest.fixture
def app(x_display: XDisplay, tmp_path: Path) -> Iterator[TkApp]:
    state_path = tmp_path / "state.json"
    process = subprocess.Popen([sys.executable, str(APP), str(state_path)])
    running = TkApp(process, state_path)
    try:
        running.wait_for(lambda state: state.get("ready", False), timeout_s=10)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=5)


@pytest.fixture
def observed(desktop: DesktopExecutor, app: TkApp) -> tuple[DesktopExecutor, Observation, TkApp]:
    return desktop, desktop.observe(), app


def grid(observation: Observation, point: tuple[float, float]) -> tuple[float, float]:
    return observation.geometry.point_to_grid(*point)


def test_observe_captures_monitor(
    observed: tuple[DesktopExecutor, Observation, TkApp], x_display: XDisplay
) -> None:
    desktop, observation, app = observed

    assert isinstance(desktop, Executor)
    assert observation.image.mode == "RGB"
    assert observation.image.size == (x_display.width, x_display.height)
    assert observation.geometry.scale == 1
    assert (observation.geometry.origin_x, observation.geometry.origin_y) == (0, 0)
    x, y = (round(value) for value in app.centre("click_area"))
    assert observation.image.getpixel((x, y)) == (0x20, 0x60, 0xC0)


def test_observe_reports_window_title(
    observed: tuple[DesktopExecutor, Observation, TkApp], x_display: XDisplay
) -> None:
    desktop, observation, app = observed
    if not x_display.window_manager:
        pytest.skip("window titles need a window manager; install openbox")

    desktop.execute(
        LeftClick(action="left_click", coordinate=grid(observation, app.centre("entry")))
    )

    assert desktop.observe().extras["window_title"] == "Executor test app"


def test_left_click_presses_button(observed: tuple[DesktopExecutor, Observation, TkApp]) -> None:
    desktop, observation, app = observed
    target = app.centre("button")

    result = desktop.execute(LeftClick(action="left_click", coordinate=grid(observation, target)))

    assert result.ok
    assert result.point == (round(target[0]), round(target[1]))
    app.wait_for(lambda state: state["button_presses"] == 1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("right_click", {"left": 0, "middle": 0, "right": 1, "double": 0, "triple": 0}),
        ("middle_click", {"left": 0, "middle": 1, "right": 0, "double": 0, "triple": 0}),
        ("double_click", {"left": 1, "middle": 0, "right": 0, "double": 1, "triple": 0}),
        ("triple_click", {"left": 1, "middle": 0, "right": 0, "double": 1, "triple": 1}),
    ],
)
def test_other_clicks_reach_app(
    observed: tuple[DesktopExecutor, Observation, TkApp], name: str, expected: dict[str, int]
) -> None:
    desktop, observation, app = observed
    action = parse_action(
        {"action": name, "coordinate": list(grid(observation, app.centre("click_area")))}
    )

    result = desktop.execute(action)

    assert result.ok
    app.wait_for(lambda state: state["clicks"] == expected)


def test_click_without_coordinate_uses_pointer(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed
    desktop.execute(
        MouseMove(action="mouse_move", coordinate=grid(observation, app.centre("button", dx=10)))
    )

    result = desktop.execute(LeftClick(action="left_click"))

    assert result.ok
    app.wait_for(lambda state: state["button_presses"] == 1)


def test_mouse_move_reaches_point(observed: tuple[DesktopExecutor, Observation, TkApp]) -> None:
    desktop, observation, app = observed
    x, y = app.centre("board", dx=17, dy=-9)

    result = desktop.execute(
        MouseMove(action="mouse_move", coordinate=grid(observation, (round(x), round(y))))
    )

    assert result.point == (round(x), round(y))
    app.wait_for(lambda state: state["pointer"] == [round(x), round(y)])


def test_type_unicode_and_symbols_exactly(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed
    text = "café Ω 日本 <a href='x'>&amp; ~`|\\ \"quoted\" 1+1=2"
    desktop.execute(
        LeftClick(action="left_click", coordinate=grid(observation, app.centre("entry")))
    )

    result = desktop.execute(Type(action="type", text=text))

    assert result.ok
    app.wait_for(lambda state: state["entry"] == text)


def test_type_unicode_under_c_locale(
    observed: tuple[DesktopExecutor, Observation, TkApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LC_ALL=C in the agent's environment does not stop xdotool from typing Unicode."""
    monkeypatch.setenv("LC_ALL", "C")
    desktop, observation, app = observed
    desktop.execute(
        LeftClick(action="left_click", coordinate=grid(observation, app.centre("entry")))
    )

    result = desktop.execute(Type(action="type", text="Ωmega café"))

    assert result.ok, result.reason
    app.wait_for(lambda state: state["entry"] == "Ωmega café")


def test_type_crlf_gives_one_line_break(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed
    desktop.execute(
        LeftClick(action="left_click", coordinate=grid(observation, app.centre("text")))
    )

    desktop.execute(Type(action="type", text="first\r\nsecond\rthird\nfourth"))

    app.wait_for(lambda state: state["text"] == "first\nsecond\nthird\nfourth")


def test_key_chord_reaches_app_with_modifiers(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed
    desktop.execute(
        LeftClick(action="left_click", coordinate=grid(observation, app.centre("entry")))
    )

    result = desktop.execute(Key(action="key", keys=["ctrl", "shift", "x"]))

    assert result.ok
    app.wait_for(lambda state: ["X", ["shift", "ctrl"]] in state["keys"])


def test_named_and_character_keys_edit_entry(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed
    desktop.execute(
        LeftClick(action="left_click", coordinate=grid(observation, app.centre("entry")))
    )

    for keys in (
        ["a"],
        ["shift", "b"],
        ["c"],
        ["left"],
        ["backspace"],
        ["home"],
        ["+"],
        ["é"],
        ["end"],
        ["space"],
        ["<"],
    ):
        result = desktop.execute(Key(action="key", keys=keys))
        assert result.ok, (keys, result.reason)

    app.wait_for(lambda state: state["entry"] == "+éac <")


def spare_keycodes() -> int:
    from Xlib import display

    connection = display.Display()
    try:
        info = connection.display.info
        count = info.max_keycode - info.min_keycode + 1
        mapping = connection.get_keyboard_mapping(info.min_keycode, count)
        return sum(1 for keysyms in mapping if not any(keysyms))
    finally:
        connection.close()


def test_typed_characters_unbound_on_close(app: TkApp) -> None:
    # No other test types Cyrillic, so no other executor has bound these characters.
    before = spare_keycodes()
    with DesktopExecutor(quiet_s=0.05) as desktop:
        observation = desktop.observe()
        desktop.execute(
            LeftClick(action="left_click", coordinate=grid(observation, app.centre("entry")))
        )
        desktop.execute(Type(action="type", text="ЖЯ"))
        app.wait_for(lambda state: state["entry"] == "ЖЯ")

        assert spare_keycodes() == before - 2

    assert spare_keycodes() == before


def test_every_named_key_has_keysym() -> None:
    assert XDOTOOL_KEYS.keys() >= NAMED_KEYS


def test_scroll_at_point_scrolls_list(observed: tuple[DesktopExecutor, Observation, TkApp]) -> None:
    desktop, observation, app = observed
    at = grid(observation, app.centre("listbox"))

    down = desktop.execute(Scroll(action="scroll", pixels=-300, coordinate=at))
    scrolled = app.wait_for(lambda state: state["list_top"] > 0)
    up = desktop.execute(Scroll(action="scroll", pixels=100, coordinate=at))

    assert down.ok
    assert up.ok
    app.wait_for(lambda state: 0 < state["list_top"] < scrolled["list_top"])


def test_hscroll_at_point_scrolls_canvas(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed
    at = grid(observation, app.centre("wide"))

    right = desktop.execute(HScroll(action="hscroll", pixels=-200, coordinate=at))
    scrolled = app.wait_for(lambda state: state["wide_left"] > 0)
    left = desktop.execute(HScroll(action="hscroll", pixels=100, coordinate=at))

    assert right.ok
    assert left.ok
    app.wait_for(lambda state: state["wide_left"] < scrolled["wide_left"])


def test_drag_moves_item(observed: tuple[DesktopExecutor, Observation, TkApp]) -> None:
    desktop, observation, app = observed
    start_x, start_y = app.state()["item"]
    desktop.execute(
        MouseMove(action="mouse_move", coordinate=grid(observation, (start_x, start_y)))
    )

    result = desktop.execute(
        LeftClickDrag(
            action="left_click_drag", coordinate=grid(observation, (start_x + 120, start_y + 70))
        )
    )

    assert result.ok
    state = app.wait_for(lambda state: state["drag_releases"] == 1)
    assert abs(state["item"][0] - start_x - 120) <= 1
    assert abs(state["item"][1] - start_y - 70) <= 1


def test_execute_waits_until_screen_settles(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    _, observation, app = observed
    target = grid(observation, app.centre("animate"))

    # A quiet time well above the 60 ms between frames, so a loaded machine cannot
    # stretch one pause into a false "settled".
    with DesktopExecutor(quiet_s=0.3) as desktop:
        started = time.monotonic()
        desktop.execute(LeftClick(action="left_click", coordinate=target))
        elapsed = time.monotonic() - started

    # The swatch changes colour ten times, 60 ms apart.
    assert app.state()["animation_done"] is True
    assert elapsed >= 0.55


def test_execute_returns_soon_on_still_screen(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, observation, app = observed

    started = time.monotonic()
    desktop.execute(
        MouseMove(action="mouse_move", coordinate=grid(observation, app.centre("board")))
    )

    assert time.monotonic() - started < 1.5


def test_final_actions_and_wait_touch_nothing(
    observed: tuple[DesktopExecutor, Observation, TkApp],
) -> None:
    desktop, _, app = observed
    before = app.state()

    started = time.monotonic()
    results = [
        desktop.execute(Wait(action="wait", time=0.2)),
        desktop.execute(Terminate(action="terminate", status="failure")),
        desktop.execute(Answer(action="answer", text="done")),
    ]

    assert time.monotonic() - started >= 0.2
    assert all(result.ok for result in results)
    assert all(result.point is None for result in results)
    assert app.state() == before


def test_agent_corner_moves_never_trip_fail_safe(x_display: XDisplay) -> None:
    with DesktopExecutor(quiet_s=0.05) as desktop:
        try:
            for corner in ((0, 0), (1000, 0), (1000, 1000), (0, 1000)):
                moved = desktop.execute(MouseMove(action="mouse_move", coordinate=corner))
                clicked = desktop.execute(LeftClick(action="left_click"))
                assert moved.ok
                assert clicked.ok
            assert clicked.point == (0, x_display.height - 1)
        finally:
            subprocess.run(["xdotool", "mousemove", "640", "400"], check=True)


def test_person_pushing_pointer_to_corner_stops_run(x_display: XDisplay) -> None:
    with DesktopExecutor(quiet_s=0.05) as desktop:
        desktop.execute(MouseMove(action="mouse_move", coordinate=(500, 500)))
        try:
            subprocess.run(["xdotool", "mousemove", str(x_display.width - 1), "0"], check=True)

            with pytest.raises(RunStoppedError, match="corner") as stopped:
                desktop.execute(MouseMove(action="mouse_move", coordinate=(500, 500)))

            assert isinstance(stopped.value, RunAborted)
            assert isinstance(stopped.value, ExecutorError)
        finally:
            subprocess.run(["xdotool", "mousemove", "640", "400"], check=True)


def test_corner_push_during_action_stops_next(x_display: XDisplay) -> None:
    with DesktopExecutor(quiet_s=0.05) as desktop:
        desktop.execute(MouseMove(action="mouse_move", coordinate=(500, 500)))
        push = threading.Timer(
            0.2, subprocess.run, (["xdotool", "mousemove", "0", str(x_display.height - 1)],)
        )
        try:
            push.start()
            desktop.execute(Type(action="type", text="a slow line of text " * 3))
            push.join()

            with pytest.raises(RunStoppedError, match="corner"):
                desktop.execute(MouseMove(action="mouse_move", coordinate=(500, 500)))
        finally:
            push.cancel()
            subprocess.run(["xdotool", "mousemove", "640", "400"], check=True)


def test_missing_monitor_rejected(x_display: XDisplay) -> None:
    with pytest.raises(ConfigError, match="monitor 5 does not exist"):
        DesktopExecutor(monitor=5).start()


def test_primary_monitor_picked() -> None:
    everything = {"left": -1024, "top": 0, "width": 2304, "height": 800}
    left = {"left": -1024, "top": 0, "width": 1024, "height": 768}
    primary = {"left": 0, "top": 0, "width": 1280, "height": 800, "is_primary": True}

    assert _pick_monitor([everything, left, primary], None) is primary
    assert _pick_monitor([everything, left, {**primary, "is_primary": False}], None) is left
    assert _pick_monitor([everything, left, primary], 1) is left


def test_start_without_display_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)

    with pytest.raises(ExecutorError, match="DISPLAY is not set"):
        DesktopExecutor().start()


def test_start_with_unreachable_display_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":987")

    with pytest.raises(ExecutorError, match="cannot connect to display ':987'"):
        DesktopExecutor().start()


def test_package_imports_without_display() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    code = (
        "import sys, executors, executors.desktop; "
        "assert executors.DesktopExecutor is executors.desktop.DesktopExecutor; "
        "assert 'pyautogui' not in sys.modules and 'playwright' not in sys.modules"
    )

    subprocess.run([sys.executable, "-c", code], check=True, env=environment, cwd=REPOSITORY)
