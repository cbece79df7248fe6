"""Scroll conversion: the model's pixels (positive up) to browser deltas and X11 wheel clicks."""

from __future__ import annotations

import pytest

from agent.scroll import PIXELS_PER_WHEEL_CLICK, browser_wheel_delta, x11_wheel_clicks


@pytest.mark.parametrize(
    ("pixels", "horizontal", "dx", "dy"),
    [
        (300, False, 0, -300),
        (-300, False, 0, 300),
        (120, True, -120, 0),
        (-120, True, 120, 0),
        (0, False, 0, 0),
    ],
)
def test_browser_delta_flips_sign(pixels: float, horizontal: bool, dx: float, dy: float) -> None:
    delta = browser_wheel_delta(pixels, horizontal)
    assert delta.dx == dx
    assert delta.dy == dy


@pytest.mark.parametrize(
    ("pixels", "horizontal", "button", "clicks"),
    [
        (300, False, 4, 3),
        (-300, False, 5, 3),
        (1, False, 4, 1),
        (-PIXELS_PER_WHEEL_CLICK * 10, False, 5, 10),
        (250, True, 6, 3),
        (-50, True, 7, 1),
        (0, False, 5, 0),
    ],
)
def test_x11_clicks(pixels: float, horizontal: bool, button: int, clicks: int) -> None:
    result = x11_wheel_clicks(pixels, horizontal)
    assert result.button == button
    assert result.clicks == clicks


def test_scroll_amount_ignores_screen_size() -> None:
    # The amount is a distance, so it must not be mapped like a 0..1000 coordinate.
    assert browser_wheel_delta(500, False).dy == -500
