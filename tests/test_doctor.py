"""`agent doctor` against a real Xvfb display and real headless Chromium."""

from __future__ import annotations

import argparse

import pytest

from agent.commands import doctor
from tests.fixtures_display import XDisplay

pytestmark = pytest.mark.timeout(60)


def run_doctor(*arguments: str) -> int:
    """Parse the arguments with doctor's own parser and run its handler."""
    parser = argparse.ArgumentParser(prog="agent")
    doctor.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", *arguments])
    return int(args.handler(args))


def test_desktop_checks_pass_on_xvfb(
    x_display: XDisplay, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_doctor("--executor", "desktop")

    output = capsys.readouterr().out
    assert status == 0, output
    for name in ("display", "xdotool", "screenshot", "calibration"):
        assert f"ok    {name}" in output
    assert f"DISPLAY={x_display.name}" in output
    assert "5 grid points landed on their pixels" in output
    assert "browser" not in output


def test_browser_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_doctor("--executor", "browser")

    output = capsys.readouterr().out
    assert status == 0, output
    assert "ok    browser" in output
    assert "5 clicks arrived on their CSS pixels" in output


def test_missing_display_fails_with_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)

    status = run_doctor("--executor", "desktop")

    output = capsys.readouterr().out
    assert status == 1
    assert "FAIL  display      DISPLAY is not set" in output
    assert "fix: run inside an X11 session" in output
    assert "skip  calibration  not run" in output


def test_unreachable_display_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPLAY", ":987")

    status = run_doctor("--executor", "desktop")

    output = capsys.readouterr().out
    assert status == 1
    assert "FAIL  display" in output
    assert "check that the X server for DISPLAY=:987 runs" in output


def test_wayland_session_fails(
    x_display: XDisplay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")

    status = run_doctor("--executor", "desktop")

    assert status == 1
    assert "log in to an X11 session" in capsys.readouterr().out


def test_browser_check_needs_no_display(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)

    assert run_doctor("--executor", "browser") == 0
    assert "display" not in capsys.readouterr().out


def test_bad_browser_path_fails(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_doctor("--executor", "browser", "--browser-path", "/nonexistent/chromium")

    output = capsys.readouterr().out
    assert status == 1
    assert "FAIL  browser" in output
    assert "/nonexistent/chromium" in output
    assert "fix: install Chromium" in output
