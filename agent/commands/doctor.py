"""`agent doctor`: check that the chosen executor can see the screen and act on it.

Desktop checks: the X display, xdotool, a screenshot, and a pointer calibration
that moves the pointer to known grid points through `DesktopExecutor` and reads the
position back with xdotool and pyautogui. Browser checks: Chromium launches,
screenshots have the viewport's size, and clicks sent to known grid points arrive
at the expected CSS pixels. Each check prints ok or what is wrong and how to fix
it. The exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import mss

from agent.actions import LeftClick, MouseMove
from agent.errors import AgentError

if TYPE_CHECKING:
    from executors.desktop import DesktopExecutor

EXIT_OK = 0
EXIT_FAILED = 1

# Grid points for the calibration: the centre and four points near the corners.
CALIBRATION_POINTS = (
    (500.0, 500.0),
    (100.0, 100.0),
    (900.0, 100.0),
    (100.0, 900.0),
    (900.0, 900.0),
)
# X11 puts the pointer on the exact pixel asked for, so any difference means display
# scaling or a pointer moved by someone else.
TOLERANCE_PX = 0

# Failures in capitals, so they stand out in a column of "ok".
_LABELS = {"ok": "ok", "fail": "FAIL", "skip": "skip"}

BROWSER_VIEWPORT = (800, 600)
# A page that records where each click arrives, in CSS pixels.
CLICK_PAGE = (
    "data:text/html,<title>doctor</title><body style='margin:0'>"
    "<script>window.clicks=[];document.addEventListener('click',"
    "e=>window.clicks.push([e.clientX,e.clientY]))</script></body>"
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: what it found and, on failure, how to fix it.

    A skipped check could not run because a check it needs failed. It counts as
    not ok, but the summary blames only the failed checks.
    """

    name: str
    status: Literal["ok", "fail", "skip"]
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the display, screenshots, browser launch and pointer calibration",
        description="Check that the executor can capture the screen and that actions land where "
        "the model points. Exits with status 1 when a check fails.",
    )
    parser.add_argument(
        "--executor",
        choices=("browser", "desktop"),
        help="check only what this executor needs (default: check both)",
    )
    parser.add_argument(
        "--browser-path",
        metavar="PATH",
        help="Chromium binary for the browser check (default: /usr/bin/chromium if present, "
        "else Playwright's own browser)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks for the chosen executor, print each outcome and return the exit status."""
    results = run_checks(args.executor, args.browser_path)
    for result in results:
        print(format_result(result))
    failed = [result.name for result in results if result.status == "fail"]
    if any(not result.ok for result in results):
        print(f"\nfailed: {', '.join(failed)}")
        return EXIT_FAILED
    print("\nall checks passed")
    return EXIT_OK


def run_checks(executor: str | None, browser_path: str | None) -> list[CheckResult]:
    """Run the desktop checks, the browser checks, or both when `executor` is None."""
    results: list[CheckResult] = []
    if executor in (None, "desktop"):
        results.extend(desktop_checks())
    if executor in (None, "browser"):
        results.append(check_browser(browser_path))
    return results


def format_result(result: CheckResult) -> str:
    line = f"{_LABELS[result.status]:<4}  {result.name:<12} {result.detail}"
    return f"{line}\n      fix: {result.fix}" if result.fix else line


# Desktop.


def desktop_checks() -> list[CheckResult]:
    """Check the display first, because the other desktop checks need it."""
    display = check_display()
    if not display.ok:
        skipped = "not run: it needs a working display"
        return [
            display,
            *(
                CheckResult(name, "skip", skipped)
                for name in ("xdotool", "screenshot", "calibration")
            ),
        ]
    xdotool = check_xdotool()
    screenshot = check_screenshot()
    if not (xdotool.ok and screenshot.ok):
        return [
            display,
            xdotool,
            screenshot,
            CheckResult("calibration", "skip", "not run: it needs xdotool and screenshots"),
        ]
    return [display, xdotool, screenshot, check_calibration()]


def check_display() -> CheckResult:
    name = os.environ.get("DISPLAY")
    if not name:
        return CheckResult(
            "display",
            "fail",
            "DISPLAY is not set, so there is no X display to drive",
            "run inside an X11 session, or start a virtual one: "
            "`Xvfb :99 -screen 0 1280x800x24 & export DISPLAY=:99`",
        )
    if os.environ.get("XDG_SESSION_TYPE") == "wayland":
        return CheckResult(
            "display",
            "fail",
            f"DISPLAY={name} is XWayland inside a Wayland session; X11 tools cannot see or drive "
            "native Wayland windows",
            "log in to an X11 session (on the login screen, pick the Xorg or X11 session)",
        )
    return _probe(
        "display",
        lambda: f"DISPLAY={name}, X server answers, screen {_monitor_size(0)}",
        f"check that the X server for DISPLAY={name} runs and that this user may connect to it "
        "(xhost, XAUTHORITY)",
    )


def check_xdotool() -> CheckResult:
    if shutil.which("xdotool") is None:
        return CheckResult(
            "xdotool",
            "fail",
            "xdotool is not installed; typing and keys need it",
            "apt-get install xdotool",
        )
    return _probe(
        "xdotool",
        lambda: f"reads the pointer at {_xdotool_pointer()}",
        "check that xdotool can reach the display",
    )


def check_screenshot() -> CheckResult:
    def capture() -> str:
        with mss.MSS() as screen:
            started = time.perf_counter()
            shot = screen.grab(screen.monitors[1])
            elapsed_ms = (time.perf_counter() - started) * 1000
            count = len(screen.monitors) - 1
        return f"{shot.width}x{shot.height} px from monitor 1 of {count} in {elapsed_ms:.1f} ms"

    return _probe(
        "screenshot", capture, "check that the X server allows screen capture (mss uses XGetImage)"
    )


def check_calibration() -> CheckResult:
    """Move the pointer to grid points through DesktopExecutor and read the position back."""
    from executors.desktop import DesktopExecutor, load_pyautogui

    try:
        pyautogui = load_pyautogui()
        original = pyautogui.position()
        with DesktopExecutor(quiet_s=0.05, settle_timeout_s=0.5) as executor:
            geometry = executor.observe().geometry
            mismatches = _calibrate(executor, pyautogui)
            screen_size = tuple(pyautogui.size())
        pyautogui.moveTo(*original)
    except AgentError as exc:
        return CheckResult("calibration", "fail", str(exc), "fix the display checks above first")

    capture_size = _monitor_size_tuple(0)
    if screen_size != capture_size:
        return CheckResult(
            "calibration",
            "fail",
            f"pyautogui sees a {screen_size[0]}x{screen_size[1]} screen but screenshots are "
            f"{capture_size[0]}x{capture_size[1]}: the display is scaled",
            "set display scaling to 100 %, or run under Xvfb",
        )
    if mismatches:
        return CheckResult(
            "calibration",
            "fail",
            "; ".join(mismatches),
            "set display scaling to 100 % and keep the mouse still while the check runs",
        )
    return CheckResult(
        "calibration",
        "ok",
        f"{len(CALIBRATION_POINTS)} grid points landed on their pixels ({geometry.describe()})",
    )


def _calibrate(executor: DesktopExecutor, pyautogui: ModuleType) -> list[str]:
    mismatches = []
    for grid_point in CALIBRATION_POINTS:
        result = executor.execute(MouseMove(action="mouse_move", coordinate=grid_point))
        expected = result.point
        for tool, actual in (
            ("xdotool", _xdotool_pointer()),
            ("pyautogui", tuple(pyautogui.position())),
        ):
            if _distance(actual, expected) > TOLERANCE_PX:
                mismatches.append(
                    f"grid {grid_point} should land on {expected}, {tool} reads {actual}"
                )
    return mismatches


# Browser.


def check_browser(browser_path: str | None) -> CheckResult:
    """Launch headless Chromium, check the screenshot size and where clicks arrive."""
    from executors.browser import BrowserExecutor

    fix = "install Chromium with `apt-get install chromium`, or pass --browser-path"
    try:
        with BrowserExecutor(
            CLICK_PAGE, viewport=BROWSER_VIEWPORT, executable_path=browser_path, settle_s=0.05
        ) as browser:
            observation = browser.observe()
            mismatches = []
            for grid_point in CALIBRATION_POINTS:
                result = browser.execute(LeftClick(action="left_click", coordinate=grid_point))
                arrived = browser.page.evaluate("window.clicks.pop()")
                if result.point is None or _distance(tuple(arrived), result.point) > 0:
                    mismatches.append(
                        f"grid {grid_point} should click {result.point}, the page saw {arrived}"
                    )
            version = (
                browser.page.context.browser.version if browser.page.context.browser else "unknown"
            )
            path = browser.executable_path or "Playwright's bundled Chromium"
    except AgentError as exc:
        return CheckResult("browser", "fail", str(exc), fix)

    if observation.image.size != BROWSER_VIEWPORT:
        return CheckResult(
            "browser",
            "fail",
            f"screenshot is {observation.image.size}, expected the {BROWSER_VIEWPORT} viewport",
            "report this: Chromium ignored the viewport size",
        )
    if mismatches:
        return CheckResult(
            "browser", "fail", "; ".join(mismatches), "report this: clicks miss their CSS pixels"
        )
    return CheckResult(
        "browser",
        "ok",
        f"Chromium {version} ({path}) started; "
        f"{len(CALIBRATION_POINTS)} clicks arrived on their CSS pixels",
    )


# Helpers.


def _probe(name: str, measure: Callable[[], str], fix: str) -> CheckResult:
    """Run one measurement and turn an error into a failed check with the error's text."""
    try:
        return CheckResult(name, "ok", measure())
    except (
        OSError,
        subprocess.SubprocessError,
        mss.ScreenShotError,
        AgentError,
        KeyError,
        ValueError,
    ) as exc:
        return CheckResult(name, "fail", f"{type(exc).__name__}: {exc}", fix)


def _monitor_size_tuple(index: int) -> tuple[int, int]:
    with mss.MSS() as screen:
        monitor = screen.monitors[index]
    return monitor["width"], monitor["height"]


def _monitor_size(index: int) -> str:
    width, height = _monitor_size_tuple(index)
    return f"{width}x{height}"


def _xdotool_pointer() -> tuple[int, int]:
    output = subprocess.run(
        ["xdotool", "getmouselocation", "--shell"],
        check=True,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout
    values = dict(line.split("=", 1) for line in output.split() if "=" in line)
    return int(values["X"]), int(values["Y"])


def _distance(first: tuple[int, ...], second: tuple[int, int] | None) -> float:
    if second is None:
        return float("inf")
    return max(abs(first[0] - second[0]), abs(first[1] - second[1]))
