"""Drive one Chromium page through Playwright's sync API.

Coordinates: Playwright's mouse takes CSS pixels, and a screenshot has
`viewport * device_scale_factor` pixels. An observation's geometry is therefore
the screenshot's size with `scale = device_scale_factor` and origin (0, 0), so
`ScreenGeometry.grid_to_point` yields CSS pixels directly.

New pages: every page the browser context opens (a `target=_blank` link,
`window.open`, a popup opened later by a timer) is queued. After each action the
executor waits `settle_s` seconds for such a page, then switches to the newest one
and reports `new_page=True`. A page that opens later still is picked up by the
next `observe()` (extras `new_page="true"`), or by a `wait` action sent to this
executor (the agent loop handles `wait` itself, so in a run it is the next `observe()`).

URL allow-list: with `allowed_urls`, every navigation request whose URL matches
none of the patterns gets an HTTP 204 No Content response, so the browser stays
on the current page, and the action returns a failed result naming the URL.
Patterns are shell-style globs matched against the whole URL with
`fnmatch.fnmatchcase` (`"https://example.org/*"`), or compiled regular
expressions matched with `fullmatch`. `file://` navigations are checked too.
Requests for images, scripts and other subresources are not checked, and
`about:` and `data:` URLs never reach Playwright's routing (Playwright 1.65), so
the list cannot block them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, Self, assert_never

from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

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
)
from agent.errors import ConfigError, ExecutorError, KeyNameError
from agent.geometry import ScreenGeometry
from agent.scroll import browser_wheel_delta
from executors.base import ExecutionResult, Observation

logger = logging.getLogger(__name__)

SYSTEM_CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# Chromium's sandbox fails when it runs as root, as on CI machines. The other flags
# stop background traffic and first-run work that an agent never needs.
DEFAULT_LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# Canonical key names (see agent.keys) to Playwright's key names. Printable ASCII
# characters are passed through as they are. Playwright 1.65's US layout has no
# F13-F24, so those keys are missing here and a `key` action naming them fails.
PLAYWRIGHT_KEYS: dict[str, str] = {
    "ctrl": "Control",
    "alt": "Alt",
    "shift": "Shift",
    "super": "Meta",
    "enter": "Enter",
    "esc": "Escape",
    "tab": "Tab",
    "space": "Space",
    "backspace": "Backspace",
    "delete": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "PageUp",
    "pagedown": "PageDown",
    "up": "ArrowUp",
    "down": "ArrowDown",
    "left": "ArrowLeft",
    "right": "ArrowRight",
    "capslock": "CapsLock",
    "numlock": "NumLock",
    "scrolllock": "ScrollLock",
    "printscreen": "PrintScreen",
    "pause": "Pause",
    "menu": "ContextMenu",
    **{f"f{n}": f"F{n}" for n in range(1, 13)},
}

# Mouse button and click count for each click action.
_CLICKS: dict[str, tuple[Literal["left", "middle", "right"], int]] = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}

# Intermediate pointer moves during a drag. Drag libraries such as jQuery UI
# start a drag only after they see mouse moves with the button held.
DRAG_STEPS = 12

UrlPattern = str | re.Pattern[str]


def playwright_key(name: str) -> str:
    """Translate one canonical key name to Playwright's name, or raise `KeyNameError`."""
    if name in PLAYWRIGHT_KEYS:
        return PLAYWRIGHT_KEYS[name]
    # Letters and digits go by their key codes, so a held Shift turns "a" into "A"
    # and "1" into "!" as on a real keyboard. Playwright sends "a" unshifted otherwise.
    if len(name) == 1 and name.isascii() and name.islower():
        return f"Key{name.upper()}"
    if len(name) == 1 and name.isascii() and name.isdigit():
        return f"Digit{name}"
    if len(name) == 1 and name.isascii() and name.isprintable():
        return name
    raise KeyNameError(
        name,
        f"key {name!r} cannot be pressed in the browser; use a type action for text "
        "or a key that a US keyboard has",
    )


def normalise_newlines(text: str) -> str:
    """Turn Windows and old Mac line breaks into one `\\n`, so `\\r\\n` types one Enter."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def url_allowed(url: str, patterns: Sequence[UrlPattern]) -> bool:
    """Tell whether `url` matches one of the allow-list patterns."""
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            if pattern.fullmatch(url):
                return True
        elif fnmatch.fnmatchcase(url, pattern):
            return True
    return False


def find_system_chromium() -> str | None:
    """Return the first system Chromium that exists, or None to use Playwright's own."""
    for path in SYSTEM_CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


class _SharedPlaywright:
    """One Playwright driver per thread, shared by the executors in that thread.

    Playwright's sync API raises when `sync_playwright().start()` runs in a thread
    that already runs a driver, so two executors in one thread must share it.
    """

    _local = threading.local()

    @classmethod
    def acquire(cls) -> Playwright:
        if getattr(cls._local, "users", 0) == 0:
            cls._local.playwright = sync_playwright().start()
            cls._local.users = 0
        cls._local.users += 1
        playwright: Playwright = cls._local.playwright
        return playwright

    @classmethod
    def release(cls) -> None:
        cls._local.users -= 1
        if cls._local.users == 0:
            cls._local.playwright.stop()
            cls._local.playwright = None


class BrowserExecutor:
    """Drives one Chromium page with real mouse and keyboard events.

    Use it as a context manager, or call `start()` and `close()`. `page` is the
    Playwright page it drives now; it changes when a new page opens.
    """

    name = "browser"

    def __init__(
        self,
        start_url: str = "about:blank",
        *,
        headless: bool = True,
        viewport: tuple[int, int] = (1280, 800),
        device_scale_factor: float = 1.0,
        executable_path: str | None = None,
        allowed_urls: Sequence[UrlPattern] | None = None,
        settle_s: float = 0.25,
        timeout_s: float = 10.0,
        launch_args: Sequence[str] = DEFAULT_LAUNCH_ARGS,
    ) -> None:
        """Configure the browser; nothing starts until `start()`.

        `executable_path` None picks the system Chromium when one is installed and
        Playwright's own browser otherwise. `settle_s` is how long each action waits
        for a new page and for the page to react. `timeout_s` bounds page loads and
        screenshots.
        """
        _check_config(viewport, device_scale_factor, settle_s, timeout_s)
        if executable_path is not None and not os.access(executable_path, os.X_OK):
            raise ConfigError(
                f"browser executable {executable_path!r} is missing or not executable; "
                "give the path of a Chromium binary, for example /usr/bin/chromium"
            )
        self.start_url = start_url
        self.headless = headless
        self.viewport = viewport
        self.device_scale_factor = float(device_scale_factor)
        self.executable_path = executable_path or find_system_chromium()
        self.allowed_urls: tuple[UrlPattern, ...] | None = (
            tuple(allowed_urls) if allowed_urls is not None else None
        )
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self.launch_args = tuple(launch_args)

        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._opened_pages: list[Page] = []
        self._blocked_urls: list[str] = []
        self._pointer = (0, 0)
        self._geometry = self._viewport_geometry()

    # Lifecycle.

    def start(self) -> Self:
        """Launch the browser, open the start page, and return self."""
        if self._page is not None:
            return self
        if self.allowed_urls is not None and not self._start_url_allowed():
            raise ConfigError(
                f"start URL {self.start_url!r} matches none of the allowed URL patterns "
                f"{list(map(_show_pattern, self.allowed_urls))}; add a pattern for it"
            )
        if not self.headless and not os.environ.get("DISPLAY"):
            raise ExecutorError(
                "a headed browser needs an X display, but DISPLAY is not set; "
                "run headless or start an X server (for example Xvfb) and set DISPLAY"
            )
        try:
            self._launch()
        except PlaywrightError as exc:
            self.close()
            binary = self.executable_path or "Playwright's bundled Chromium"
            raise ExecutorError(
                f"could not launch Chromium ({binary}): {_first_line(exc)}; "
                "install it with `apt-get install chromium`, or give another Chromium with --browser PATH"
            ) from exc
        self._open_start_page()
        return self

    def close(self) -> None:
        """Close the browser. Safe to call more than once."""
        browser, playwright = self._browser, self._playwright
        self._page = self._context = self._browser = self._playwright = None
        if browser is not None:
            try:
                browser.close()
            except PlaywrightError as exc:
                logger.warning("closing the browser failed: %s", _first_line(exc))
        if playwright is not None:
            _SharedPlaywright.release()

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
    def page(self) -> Page:
        """The Playwright page this executor drives now, for harnesses that read the DOM."""
        return self._require_page()

    # The executor seam.

    def observe(self) -> Observation:
        """Capture the current page, switching first to any page opened since the last call."""
        self._dispatch_events()
        new_page = self._adopt_new_pages()
        page = self._require_page()
        try:
            png = page.screenshot(type="png", timeout=self.timeout_s * 1000)
        except PlaywrightError as exc:
            raise ExecutorError(f"screenshot of {page.url!r} failed: {_first_line(exc)}") from exc
        image = Image.open(io.BytesIO(png)).convert("RGB")
        self._geometry = ScreenGeometry(image.width, image.height, scale=self.device_scale_factor)
        extras = {"url": page.url, "title": _page_title(page)}
        if new_page:
            extras["new_page"] = "true"
        return Observation(
            image=image, geometry=self._geometry, timestamp=time.time(), extras=extras
        )

    def execute(self, action: Action) -> ExecutionResult:
        """Carry out one action with real input events and report what happened."""
        page = self._require_page()
        self._blocked_urls.clear()
        try:
            point = self._perform(page, action)
        except KeyNameError as exc:
            return ExecutionResult.failed(str(exc))
        except PlaywrightError as exc:
            if page.is_closed() and not self._open_pages():
                raise ExecutorError(
                    "the browser page was closed and no other page is open"
                ) from exc
            return ExecutionResult.failed(
                f"{action.action} failed in the browser: {_first_line(exc)}"
            )

        new_page = self._settle(action)
        logger.debug("browser %s at %s: new page %s", action.action, point, new_page)
        if self._blocked_urls:
            return ExecutionResult(
                ok=False, reason=self._blocked_reason(), point=point, new_page=new_page
            )
        return ExecutionResult(ok=True, point=point, new_page=new_page)

    # Actions.

    def _perform(self, page: Page, action: Action) -> tuple[int, int] | None:
        match action:
            case Key(keys=keys):
                self._press(page, keys)
                return None
            case Type(text=text):
                page.keyboard.type(normalise_newlines(text))
                return None
            case MouseMove(coordinate=coordinate):
                return self._move(page, coordinate)
            case LeftClick() | RightClick() | MiddleClick() | DoubleClick() | TripleClick():
                return self._click(page, action)
            case LeftClickDrag(coordinate=coordinate):
                return self._drag(page, coordinate)
            case Scroll() | HScroll():
                return self._scroll(page, action)
            case Wait(time=seconds):
                page.wait_for_timeout(seconds * 1000)
                return None
            case Terminate() | Answer():
                return None
            case _:
                assert_never(action)

    def _press(self, page: Page, keys: list[str]) -> None:
        """Press the keys in order and release them in reverse, like a person holding a chord."""
        if (
            len(keys) == 1
            and len(keys[0]) == 1
            and not (keys[0].isascii() and keys[0].isprintable())
        ):
            # One character such as "é" that a US layout lacks is typed as text.
            page.keyboard.type(keys[0])
            return
        names = [playwright_key(key) for key in keys]
        pressed: list[str] = []
        try:
            for name in names:
                page.keyboard.down(name)
                pressed.append(name)
        finally:
            for name in reversed(pressed):
                page.keyboard.up(name)

    def _move(self, page: Page, coordinate: tuple[float, float]) -> tuple[int, int]:
        point = self._geometry.grid_to_point(*coordinate)
        page.mouse.move(*point)
        self._pointer = point
        return point

    def _click(
        self, page: Page, action: LeftClick | RightClick | MiddleClick | DoubleClick | TripleClick
    ) -> tuple[int, int]:
        point = self._pointer if action.coordinate is None else self._move(page, action.coordinate)
        button, count = _CLICKS[action.action]
        page.mouse.click(*point, button=button, click_count=count)
        return point

    def _drag(self, page: Page, coordinate: tuple[float, float]) -> tuple[int, int]:
        """Drag from where the pointer is to `coordinate` with the left button held."""
        target = self._geometry.grid_to_point(*coordinate)
        page.mouse.move(*self._pointer)
        page.mouse.down()
        try:
            page.mouse.move(*target, steps=DRAG_STEPS)
        finally:
            page.mouse.up()
        self._pointer = target
        return target

    def _scroll(self, page: Page, action: Scroll | HScroll) -> tuple[int, int]:
        point = self._pointer if action.coordinate is None else self._move(page, action.coordinate)
        delta = browser_wheel_delta(action.pixels, horizontal=isinstance(action, HScroll))
        page.mouse.wheel(delta.dx, delta.dy)
        return point

    # Pages.

    def _launch(self) -> None:
        self._playwright = _SharedPlaywright.acquire()
        self._browser = self._playwright.chromium.launch(
            executable_path=self.executable_path,
            headless=self.headless,
            args=list(self.launch_args),
            timeout=self.timeout_s * 1000,
        )
        self._context = self._browser.new_context(
            viewport={"width": self.viewport[0], "height": self.viewport[1]},
            device_scale_factor=self.device_scale_factor,
        )
        self._context.set_default_timeout(self.timeout_s * 1000)
        if self.allowed_urls is not None:
            self._context.route("**/*", self._route)
        self._page = self._context.new_page()
        self._context.on("page", self._on_page)
        logger.info(
            "browser started: %s, headless %s, viewport %dx%d, scale %g",
            self.executable_path or "Playwright bundled Chromium",
            self.headless,
            *self.viewport,
            self.device_scale_factor,
        )

    def _open_start_page(self) -> None:
        page = self._require_page()
        try:
            page.goto(self.start_url, wait_until="load", timeout=self.timeout_s * 1000)
        except PlaywrightError as exc:
            self.close()
            raise ExecutorError(
                f"could not open the start URL {self.start_url!r}: {_first_line(exc)}; "
                "check the URL"
            ) from exc

    def _on_page(self, page: Page) -> None:
        self._opened_pages.append(page)

    def _route(self, route: Route) -> None:
        """Fulfil navigations outside the allow-list with HTTP 204, which keeps the current page."""
        request = route.request
        patterns = self.allowed_urls or ()
        if request.is_navigation_request() and not url_allowed(request.url, patterns):
            logger.warning(
                "navigation to %s blocked by the URL allow-list", _without_query(request.url)
            )
            self._blocked_urls.append(request.url)
            route.fulfill(status=204)
            return
        route.fallback()

    def _settle(self, action: Action) -> bool:
        """Give the page `settle_s` to react and switch to a page the action opened."""
        page = self._require_page()
        # Playwright reads a timeout of 0 as "wait forever", so settle_s 0 skips the wait.
        if (
            self.settle_s > 0
            and not isinstance(action, Terminate | Answer)
            and not self._opened_pages
        ):
            # No new page within settle_s is the usual case.
            with contextlib.suppress(PlaywrightError):
                self._require_context().wait_for_event("page", timeout=self.settle_s * 1000)
        new_page = self._adopt_new_pages()
        if not new_page and not page.is_closed():
            _wait_for_load(page, self.timeout_s)
        return new_page

    def _dispatch_events(self) -> None:
        """Let Playwright deliver queued events such as new pages.

        The sync API delivers events only while a call into Playwright runs, so a
        page opened while the agent was busy elsewhere is unseen until then.
        """
        page = self._page
        if page is None or page.is_closed():
            return
        # A page that closed meanwhile raises here, and _adopt_new_pages handles it.
        with contextlib.suppress(PlaywrightError):
            page.wait_for_timeout(0)

    def _adopt_new_pages(self) -> bool:
        """Switch to the newest page opened since the last switch; tell whether one was."""
        fresh = [page for page in self._opened_pages if not page.is_closed()]
        self._opened_pages.clear()
        current = self._page
        if fresh:
            self._switch_to(fresh[-1])
            return True
        if current is not None and current.is_closed():
            remaining = self._open_pages()
            if not remaining:
                raise ExecutorError("the browser page was closed and no other page is open")
            self._switch_to(remaining[-1])
        return False

    def _switch_to(self, page: Page) -> None:
        _wait_for_load(page, self.timeout_s)
        page.bring_to_front()
        self._page = page
        self._pointer = (0, 0)  # Playwright's mouse starts at the top left of every page.
        logger.info("switched to page %s", _without_query(page.url))

    def _open_pages(self) -> list[Page]:
        context = self._context
        return [] if context is None else [page for page in context.pages if not page.is_closed()]

    def _require_page(self) -> Page:
        if self._page is None:
            raise ExecutorError(
                "the browser executor is not started; use it in a with block or call start()"
            )
        return self._page

    def _require_context(self) -> BrowserContext:
        if self._context is None:
            raise ExecutorError(
                "the browser executor is not started; use it in a with block or call start()"
            )
        return self._context

    def _blocked_reason(self) -> str:
        urls = ", ".join(dict.fromkeys(self._blocked_urls))
        patterns = ", ".join(dict.fromkeys(map(_show_pattern, self.allowed_urls or ())))
        return (
            f"navigation to {urls} was blocked because it matches none of the allowed "
            f"URL patterns: {patterns}"
        )

    def _start_url_allowed(self) -> bool:
        # about: and data: URLs bypass Playwright's routing, so the list cannot block them.
        if self.start_url.startswith(("about:", "data:")):
            return True
        return url_allowed(self.start_url, self.allowed_urls or ())

    def _viewport_geometry(self) -> ScreenGeometry:
        """Return the geometry a screenshot will have, for actions sent before any observation."""
        width, height = self.viewport
        scale = self.device_scale_factor
        return ScreenGeometry(round(width * scale), round(height * scale), scale=scale)


# Larger pages make Chromium's screenshot time out, and the model gets them scaled down anyway.
MAX_VIEWPORT_SIDE = 8192
MAX_DEVICE_SCALE_FACTOR = 4.0


def _check_config(
    viewport: tuple[int, int], device_scale_factor: float, settle_s: float, timeout_s: float
) -> None:
    if len(viewport) != 2 or any(
        not isinstance(side, int) or not 1 <= side <= MAX_VIEWPORT_SIDE for side in viewport
    ):
        raise ConfigError(
            f"viewport {viewport!r} is invalid; give (width, height) in CSS pixels, "
            f"each from 1 to {MAX_VIEWPORT_SIDE}"
        )
    if not 0 < device_scale_factor <= MAX_DEVICE_SCALE_FACTOR:
        raise ConfigError(
            f"device scale factor {device_scale_factor!r} is invalid; "
            f"use a number above 0 and at most {MAX_DEVICE_SCALE_FACTOR:g}, such as 1 or 2"
        )
    if settle_s < 0 or timeout_s <= 0:
        raise ConfigError(
            f"settle_s {settle_s!r} and timeout_s {timeout_s!r} must be >= 0 and > 0 seconds"
        )


def _wait_for_load(page: Page, timeout_s: float) -> None:
    try:
        page.wait_for_load_state("domcontentloaded", timeout=timeout_s * 1000)
    except PlaywrightError as exc:
        logger.warning(
            "page %s did not finish loading: %s", _without_query(page.url), _first_line(exc)
        )


def _without_query(url: str) -> str:
    """Drop a URL's query and fragment for logs, because a form can put a typed secret there."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _page_title(page: Page) -> str:
    try:
        return page.title()
    except PlaywrightError:
        return ""  # The page is navigating; the next observation has the title.


def _show_pattern(pattern: UrlPattern) -> str:
    return f"re:{pattern.pattern}" if isinstance(pattern, re.Pattern) else pattern


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
