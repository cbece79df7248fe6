"""Drive an X11 desktop: capture one monitor with mss, act with pyautogui and xdotool.

Coordinates: X11 input points are screen pixels. An observation's geometry is
therefore the monitor's size in pixels with scale 1, and its origin is the
monitor's top-left corner on the X screen, which is not (0, 0) on a monitor right
of or below another.

Tools per action, and why:

- pointer moves, clicks and drags use pyautogui;
- typing uses `xdotool type --delay 12`, because pyautogui's `write` drops
  non-ASCII characters and types `<` as `>`, and xdotool loses Unicode characters
  with a smaller delay (measured with xdotool 3 on Xvfb). Characters missing from
  the keyboard map are bound to spare keycodes first (see `KeymapBinder`);
- key chords use `xdotool key` with the keysyms of `XDOTOOL_KEYS`;
- wheel scrolling uses `xdotool click` with buttons 4-7, because pyautogui 0.9.54
  cannot click buttons 6 and 7.

pyautogui's fail-safe raises on the call after the pointer sits in a screen
corner, even when the agent itself clicked there, so this executor turns it off.

Stopping a run: push the pointer into any corner of the screen. Before every
action the executor compares the pointer with where its own last action left it.
A pointer in a corner that the agent did not put there raises `RunStoppedError`
before the action, so nothing more is done, and the loop ends the run as aborted.
Ctrl+C in the terminal that runs the agent is the other way to stop it.

pyautogui opens the X display when it is imported, so it is imported in
`start()`, and `import executors.desktop` works without a display.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from types import ModuleType, TracebackType
from typing import Any, Self, assert_never

import mss
from PIL import Image

from agent.actions import (
    Action,
    Answer,
    DoubleClick,
    HScroll,
    Key,
    LeftClick,
    LeftClickDrag,
    MiddleClick,
    MouseMove,
    RightClick,
    Scroll,
    Terminate,
    TripleClick,
    Type,
    Wait,
    action_point,
)
from agent.control import RunAborted
from agent.errors import ConfigError, ExecutorError, KeyNameError
from agent.geometry import ScreenGeometry
from agent.scroll import x11_wheel_clicks
from executors.base import ExecutionResult, Observation

logger = logging.getLogger(__name__)

# Canonical key names (see agent.keys) to X keysym names for `xdotool key`.
# Letters and digits are their own keysyms. Any other character is sent as its
# Unicode keysym `U+hex`, which xdotool maps onto a spare keycode.
XDOTOOL_KEYS: dict[str, str] = {
    "ctrl": "Control_L",
    "alt": "Alt_L",
    "shift": "Shift_L",
    "super": "Super_L",
    "enter": "Return",
    "esc": "Escape",
    "tab": "Tab",
    "space": "space",
    "backspace": "BackSpace",
    "delete": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "pagedown": "Next",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "capslock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "printscreen": "Print",
    "pause": "Pause",
    "menu": "Menu",
    **{f"f{n}": f"F{n}" for n in range(1, 25)},
    # ASCII punctuation, which xdotool does not accept as bare characters.
    " ": "space",
    "!": "exclam",
    '"': "quotedbl",
    "#": "numbersign",
    "$": "dollar",
    "%": "percent",
    "&": "ampersand",
    "'": "apostrophe",
    "(": "parenleft",
    ")": "parenright",
    "*": "asterisk",
    "+": "plus",
    ",": "comma",
    "-": "minus",
    ".": "period",
    "/": "slash",
    ":": "colon",
    ";": "semicolon",
    "<": "less",
    "=": "equal",
    ">": "greater",
    "?": "question",
    "@": "at",
    "[": "bracketleft",
    "\\": "backslash",
    "]": "bracketright",
    "^": "asciicircum",
    "_": "underscore",
    "`": "grave",
    "{": "braceleft",
    "|": "bar",
    "}": "braceright",
    "~": "asciitilde",
}

# Mouse button and click count for each click action.
_CLICKS: dict[str, tuple[str, int]] = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}

TYPE_DELAY_MS = 12
# Sleep after each pyautogui call (its default is 0.1 s, which makes every action slow).
PYAUTOGUI_PAUSE_S = 0.01


class RunStoppedError(ExecutorError, RunAborted):
    """The person stopped the run by pushing the pointer into a screen corner.

    It is a `RunAborted` too, so the agent loop ends the run as aborted, not failed.
    """


def character_keysym(character: str) -> int:
    """Return the X keysym of one character: Latin-1 keysyms equal the code point."""
    code = ord(character)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


class KeymapBinder:
    """Binds characters that the keyboard map lacks to spare keycodes while the executor runs.

    `xdotool type` binds such a character to a scratch keycode by itself, but unbinds
    it right after the key release. An app that looks the key up after that (because
    it was busy) finds no symbol, and the character is lost. That happened to 1 in 15
    to 1 in 25 "café Ω ü ñ 日" typed into Tk on a 2-core Xvfb machine with both cores
    busy, whatever the `--delay`. A character bound here stays bound until `close()`,
    so xdotool finds it in the map and leaves the map alone. In the same setup, 40 of
    40 such strings typed by this executor arrived intact.
    """

    def __init__(self) -> None:
        from Xlib import display  # python-xlib comes with pyautogui on Linux.

        self._display = display.Display()
        info = self._display.display.info
        self._first = info.min_keycode
        self._count = info.max_keycode - info.min_keycode + 1
        # Character -> keycode, least recently used first.
        self._bound: dict[str, int] = {}

    def bind(self, text: str) -> None:
        """Bind every character of `text` that has no key in the map, as far as keycodes last."""
        mapping = self._display.get_keyboard_mapping(self._first, self._count)
        present = {keysym for keysyms in mapping for keysym in keysyms}
        wanted = [
            character
            for character in dict.fromkeys(text)
            if ord(character) >= 0x20 and character_keysym(character) not in present
        ]
        for character in list(self._bound):
            if character in text:
                self._bound[character] = self._bound.pop(character)  # Now most recently used.
        spare = [
            self._first + index
            for index, keysyms in enumerate(mapping)
            if not any(keysyms) and self._first + index not in self._bound.values()
        ]
        for character in wanted:
            keycode = self._free_keycode(spare, text)
            if keycode is None:
                # xdotool binds the rest itself; see the class docstring for the risk.
                logger.warning("no spare keycode left for %r", character)
                break
            self._set(keycode, character_keysym(character))
            self._bound[character] = keycode
        self._display.sync()

    def _free_keycode(self, spare: list[int], text: str) -> int | None:
        if spare:
            return spare.pop(0)
        for character, keycode in self._bound.items():
            if character not in text:
                del self._bound[character]
                return keycode
        return None

    def close(self) -> None:
        """Unbind every keycode bound here and close the X connection."""
        for keycode in self._bound.values():
            self._set(keycode, 0)
        self._bound.clear()
        self._display.sync()
        self._display.close()

    def _set(self, keycode: int, keysym: int) -> None:
        # Every column gets the keysym, so Shift or AltGr cannot change the character.
        width = len(self._display.get_keyboard_mapping(keycode, 1)[0])
        self._display.change_keyboard_mapping(keycode, [(keysym,) * width])


def xdotool_key(name: str) -> str:
    """Translate one canonical key name to the keysym name `xdotool key` takes."""
    if name in XDOTOOL_KEYS:
        return XDOTOOL_KEYS[name]
    if len(name) == 1 and name.isascii() and name.isalnum():
        return name
    if len(name) == 1:
        return f"U{ord(name):04X}"
    raise KeyNameError(name, f"key {name!r} has no X keysym; use a key name from agent.keys")


def normalise_newlines(text: str) -> str:
    """Turn Windows and old Mac line breaks into one `\\n`, so `\\r\\n` types one Return."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


class DesktopExecutor:
    """Drives the X11 display named by `DISPLAY`, capturing one monitor.

    `monitor` is mss's monitor number (1 is the first monitor); None picks the
    primary monitor. After each action the executor polls the monitor every
    `poll_s` seconds until it has not changed for `quiet_s` seconds, or until
    `settle_timeout_s` has passed.
    """

    name = "desktop"

    def __init__(
        self,
        monitor: int | None = None,
        *,
        quiet_s: float = 0.15,
        settle_timeout_s: float = 2.0,
        poll_s: float = 0.03,
        drag_duration_s: float = 0.3,
        stop_on_corner: bool = True,
    ) -> None:
        if monitor is not None and monitor < 1:
            raise ConfigError(f"monitor {monitor} is invalid; mss numbers monitors from 1")
        if min(quiet_s, settle_timeout_s, poll_s, drag_duration_s) < 0:
            raise ConfigError(
                "quiet_s, settle_timeout_s, poll_s and drag_duration_s must be >= 0 seconds"
            )
        self.monitor_number = monitor
        self.quiet_s = quiet_s
        self.settle_timeout_s = settle_timeout_s
        self.poll_s = poll_s
        self.drag_duration_s = drag_duration_s
        self.stop_on_corner = stop_on_corner

        self._screen: mss.MSS | None = None
        self._monitor: dict[str, Any] = {}
        self._pyautogui: ModuleType | None = None
        self._keymap: KeymapBinder | None = None
        self._agent_pointer: tuple[int, int] | None = None
        self._geometry: ScreenGeometry | None = None

    # Lifecycle.

    def start(self) -> Self:
        """Connect to the display, pick the monitor and load pyautogui; return self."""
        if self._screen is not None:
            return self
        if not os.environ.get("DISPLAY"):
            raise ExecutorError(
                "the desktop executor needs an X display, but DISPLAY is not set; "
                "run it inside an X session or start Xvfb and set DISPLAY"
            )
        if shutil.which("xdotool") is None:
            raise ExecutorError(
                "xdotool is not installed; install it with `apt-get install xdotool`"
            )
        try:
            self._connect()
        except BaseException:
            self.close()
            raise
        self._geometry = self._monitor_geometry()
        self._agent_pointer = self._pointer()
        logger.info(
            "desktop started on %s, monitor %s", os.environ["DISPLAY"], self._geometry.describe()
        )
        return self

    def _connect(self) -> None:
        from Xlib.error import DisplayError  # python-xlib comes with pyautogui on Linux.

        try:
            self._screen = mss.MSS()
            self._monitor = dict(_pick_monitor(self._screen.monitors, self.monitor_number))
            self._keymap = KeymapBinder()
        except (mss.ScreenShotError, DisplayError) as exc:
            raise ExecutorError(
                f"cannot connect to display {os.environ['DISPLAY']!r}: {exc}; "
                "check that the X server runs"
            ) from exc
        self._pyautogui = load_pyautogui()

    def close(self) -> None:
        """Release the screen capture and unbind the keys bound for typing. Safe to repeat."""
        screen, self._screen = self._screen, None
        if screen is not None:
            screen.close()
        keymap, self._keymap = self._keymap, None
        if keymap is not None:
            keymap.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def monitor(self) -> dict[str, Any]:
        """The captured monitor as mss describes it: left, top, width and height in pixels."""
        return dict(self._monitor)

    # The executor seam.

    def observe(self) -> Observation:
        """Capture the monitor, with the title of the focused window in extras."""
        shot = self._grab()
        image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")
        self._geometry = self._monitor_geometry(image.width, image.height)
        extras = {"window_title": _window_title()}
        return Observation(
            image=image, geometry=self._geometry, timestamp=time.time(), extras=extras
        )

    def execute(self, action: Action) -> ExecutionResult:
        """Carry out one action, then wait until the screen settles.

        Raises `RunStoppedError` when the person has pushed the pointer into a corner.
        """
        self._check_stop()
        pyautogui = self._require_pyautogui()
        try:
            point = self._perform(action)
        except KeyNameError as exc:
            return ExecutionResult.failed(str(exc))
        except subprocess.CalledProcessError as exc:
            return ExecutionResult.failed(f"{action.action} failed: xdotool: {_stderr(exc)}")
        except subprocess.TimeoutExpired as exc:
            return ExecutionResult.failed(
                f"{action.action} failed: xdotool timed out after {exc.timeout:g} s"
            )
        except (pyautogui.PyAutoGUIException, OSError) as exc:
            raise ExecutorError(f"{action.action} failed on the X display: {exc}") from exc

        if not isinstance(action, Wait | Terminate | Answer):
            self._wait_until_settled()
        # Remember where the agent put the pointer, not where it is now: a person who pushes
        # it into a corner while this action runs must still stop the run at the next one.
        if point is not None and action_point(action) is not None:
            self._agent_pointer = point
        logger.debug("desktop %s at %s", action.action, point)
        return ExecutionResult.done(point=point)

    # Actions.

    def _perform(self, action: Action) -> tuple[int, int] | None:
        pyautogui = self._require_pyautogui()
        match action:
            case Key(keys=keys):
                self._bind_characters("".join(key for key in keys if len(key) == 1))
                _run_xdotool("key", "--", "+".join(xdotool_key(key) for key in keys))
                return None
            case Type(text=text):
                self._bind_characters(text)
                _type_text(normalise_newlines(text))
                return None
            case MouseMove(coordinate=coordinate):
                point = self._point(coordinate)
                pyautogui.moveTo(*point)
                return point
            case LeftClick() | RightClick() | MiddleClick() | DoubleClick() | TripleClick():
                return self._click(action)
            case LeftClickDrag(coordinate=coordinate):
                return self._drag(coordinate)
            case Scroll() | HScroll():
                return self._scroll(action)
            case Wait(time=seconds):
                time.sleep(seconds)
                return None
            case Terminate() | Answer():
                return None
            case _:
                assert_never(action)

    def _bind_characters(self, text: str) -> None:
        if self._keymap is not None and not text.isascii():
            self._keymap.bind(text)

    def _click(
        self, action: LeftClick | RightClick | MiddleClick | DoubleClick | TripleClick
    ) -> tuple[int, int]:
        pyautogui = self._require_pyautogui()
        point = self._pointer() if action.coordinate is None else self._point(action.coordinate)
        button, count = _CLICKS[action.action]
        pyautogui.click(*point, clicks=count, interval=0.02, button=button)
        return point

    def _drag(self, coordinate: tuple[float, float]) -> tuple[int, int]:
        """Drag from the pointer to `coordinate` with the left button held, moving in steps."""
        pyautogui = self._require_pyautogui()
        target = self._point(coordinate)
        pyautogui.mouseDown(button="left")
        try:
            pyautogui.moveTo(*target, duration=self.drag_duration_s)
        finally:
            pyautogui.mouseUp(button="left")
        return target

    def _scroll(self, action: Scroll | HScroll) -> tuple[int, int]:
        pyautogui = self._require_pyautogui()
        if action.coordinate is not None:
            pyautogui.moveTo(*self._point(action.coordinate))
        wheel = x11_wheel_clicks(action.pixels, horizontal=isinstance(action, HScroll))
        if wheel.clicks:
            _run_xdotool("click", "--repeat", str(wheel.clicks), "--delay", "20", str(wheel.button))
        return self._pointer()

    # Screen state.

    def _check_stop(self) -> None:
        if not self.stop_on_corner:
            return
        pointer = self._pointer()
        if pointer in self._screen_corners() and pointer != self._agent_pointer:
            logger.warning("run stopped: the pointer was pushed into the corner %s", pointer)
            raise RunStoppedError(
                f"stopped: the pointer was moved into the screen corner {pointer}; "
                "move it away from the corner before starting again"
            )

    def _screen_corners(self) -> set[tuple[int, int]]:
        width, height = self._require_pyautogui().size()
        return {(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)}

    def _wait_until_settled(self) -> bool:
        """Poll the monitor until it stays unchanged for `quiet_s`; tell whether it settled."""
        start = time.monotonic()
        previous = self._grab().bgra
        unchanged_since = start
        while True:
            time.sleep(self.poll_s)
            frame = self._grab().bgra
            now = time.monotonic()
            if frame != previous:
                previous, unchanged_since = frame, now
            elif now - unchanged_since >= self.quiet_s:
                return True
            if now - start >= self.settle_timeout_s:
                logger.debug("screen still changing after %.1f s; going on", self.settle_timeout_s)
                return False

    def _grab(self) -> Any:
        screen = self._screen
        if screen is None:
            raise ExecutorError(
                "the desktop executor is not started; use it in a with block or call start()"
            )
        try:
            return screen.grab(self._monitor)
        except mss.ScreenShotError as exc:
            raise ExecutorError(
                f"screen capture failed: {exc}; check that the X server still runs"
            ) from exc

    def _point(self, coordinate: tuple[float, float]) -> tuple[int, int]:
        geometry = self._geometry or self._monitor_geometry()
        return geometry.grid_to_point(*coordinate)

    def _pointer(self) -> tuple[int, int]:
        x, y = self._require_pyautogui().position()
        return int(x), int(y)

    def _monitor_geometry(
        self, width: int | None = None, height: int | None = None
    ) -> ScreenGeometry:
        monitor = self._monitor
        return ScreenGeometry(
            width or monitor["width"],
            height or monitor["height"],
            scale=1.0,
            origin_x=monitor["left"],
            origin_y=monitor["top"],
        )

    def _require_pyautogui(self) -> ModuleType:
        if self._pyautogui is None:
            raise ExecutorError(
                "the desktop executor is not started; use it in a with block or call start()"
            )
        return self._pyautogui


def load_pyautogui() -> ModuleType:
    """Import pyautogui for the agent's own use: fail-safe off and a short pause.

    The fail-safe is turned off for the whole process, because pyautogui keeps it
    in a module-level setting. `DesktopExecutor` checks the corners itself.
    """
    from Xlib.error import DisplayError  # python-xlib comes with pyautogui on Linux.

    try:
        import pyautogui
    except (KeyError, OSError, DisplayError) as exc:  # KeyError: DISPLAY is unset.
        raise ExecutorError(f"pyautogui cannot open the X display: {exc!r}; check DISPLAY") from exc
    pyautogui.FAILSAFE = False
    pyautogui.PAUSE = PYAUTOGUI_PAUSE_S
    return pyautogui


def _pick_monitor(monitors: list[dict[str, Any]], number: int | None) -> dict[str, Any]:
    """Return mss's monitor `number`, or the primary one (the first when none is marked)."""
    if len(monitors) < 2:
        raise ExecutorError("mss found no monitor on this display; check the X server")
    if number is None:
        return next((m for m in monitors[1:] if m.get("is_primary")), monitors[1])
    if number >= len(monitors):
        raise ConfigError(
            f"monitor {number} does not exist; this display has monitors 1 to {len(monitors) - 1}"
        )
    return monitors[number]


def _type_text(text: str) -> None:
    # A newline typed by xdotool is a Return key press. The text goes through stdin, not
    # the command line, because other local users can read a process's arguments and the
    # text may be a secret.
    timeout = 10 + len(text) * TYPE_DELAY_MS / 1000 * 4
    _run_xdotool("type", "--delay", str(TYPE_DELAY_MS), "--file", "-", timeout=timeout, stdin=text)


def _run_xdotool(*args: str, timeout: float = 10.0, stdin: str | None = None) -> str:
    # xdotool decodes typed text with the C library's locale, and under LC_ALL=C it fails
    # on any non-ASCII character. The text is sent as UTF-8, so xdotool gets a UTF-8 locale.
    result = subprocess.run(
        ["xdotool", *args],
        check=True,
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        input=stdin,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    return result.stdout


def _window_title() -> str:
    """Return the focused window's title, or "" when there is none (no window manager, say)."""
    for query in (("getactivewindow", "getwindowname"), ("getwindowfocus", "getwindowname")):
        try:
            return _run_xdotool(*query, timeout=2.0).strip()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            continue
    return ""


def _stderr(exc: subprocess.CalledProcessError) -> str:
    text = (exc.stderr or "").strip()
    return text.splitlines()[-1] if text else f"exit status {exc.returncode}"
