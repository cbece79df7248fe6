"""A private X display for desktop tests: Xvfb, plus openbox when it is installed.

`x_display` starts one Xvfb server per test session on a display number the
server picks itself (`-displayfd`), so parallel test runs never collide, and
points `DISPLAY` at it for the whole session. Tests skip when Xvfb is missing.
The window manager gives windows focus and an active-window title, as on a real
desktop. Without openbox the tests still run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SCREEN_SIZE = (1280, 800)
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class XDisplay:
    """A running X server: its `DISPLAY` name and screen size in pixels."""

    name: str
    width: int
    height: int
    window_manager: bool


def _start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    read_end, write_end = os.pipe()
    width, height = SCREEN_SIZE
    server = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_end),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
            "-noreset",
        ],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    # Xvfb writes the display number it chose once it accepts connections.
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        server.wait()
        raise RuntimeError("Xvfb exited before it reported a display number")
    return server, f":{number}"


def _start_window_manager(display: str) -> subprocess.Popen[bytes] | None:
    # xprop shows when openbox is ready. Debian packages: openbox, x11-utils.
    if shutil.which("openbox") is None or shutil.which("xprop") is None:
        return None
    manager = subprocess.Popen(
        ["openbox", "--sm-disable"],
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_window_manager(display)
    return manager


def _wait_for_window_manager(display: str) -> None:
    """Wait until openbox has claimed the screen (it sets _NET_SUPPORTING_WM_CHECK)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        query = subprocess.run(
            ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
        )
        if "window id" in query.stdout:
            return
        time.sleep(0.05)
    # Tests that need window focus would otherwise fail later in confusing ways.
    raise RuntimeError(f"openbox did not take over display {display} within {START_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def x_display() -> Iterator[XDisplay]:
    """Start Xvfb (and openbox) for the session and set DISPLAY to it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed; install it with `apt-get install xvfb`")
    server, name = _start_xvfb()
    manager = None
    patch = pytest.MonkeyPatch()
    try:
        manager = _start_window_manager(name)
        patch.setenv("DISPLAY", name)
        yield XDisplay(name, *SCREEN_SIZE, window_manager=manager is not None)
    finally:
        patch.undo()
        _stop(manager)
        _stop(server)
