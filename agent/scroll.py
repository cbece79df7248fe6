"""Convert the model's scroll amount into each executor's unit and sign.

The `scroll` and `hscroll` actions carry `pixels`: positive scrolls up (or left),
negative scrolls down (or right). `pixels` is a distance, not a position, so it is
never mapped through the 0..1000 grid and does not depend on the screenshot size.

- Browsers take wheel deltas in CSS pixels where positive scrolls down (or right),
  so the sign flips.
- X11 takes wheel clicks (buttons 4/5 vertical, 6/7 horizontal). One click is taken
  as `PIXELS_PER_WHEEL_CLICK` pixels, and any non-zero amount scrolls at least one click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# An estimate: toolkits scroll three text lines, about 50-120 px, per wheel click.
PIXELS_PER_WHEEL_CLICK = 100


@dataclass(frozen=True)
class WheelDelta:
    """A wheel movement in CSS pixels, positive meaning down or right."""

    dx: float
    dy: float


@dataclass(frozen=True)
class WheelClicks:
    """A number of X11 wheel clicks and the button that makes each one."""

    button: int
    clicks: int


def browser_wheel_delta(pixels: float, horizontal: bool) -> WheelDelta:
    """Return the Playwright `mouse.wheel` delta for a model scroll amount."""
    delta = -float(pixels)
    return WheelDelta(dx=delta, dy=0.0) if horizontal else WheelDelta(dx=0.0, dy=delta)


def x11_wheel_clicks(pixels: float, horizontal: bool) -> WheelClicks:
    """Return the X11 wheel button and click count for a model scroll amount."""
    clicks = math.ceil(abs(pixels) / PIXELS_PER_WHEEL_CLICK) if pixels else 0
    if horizontal:
        button = 6 if pixels > 0 else 7
    else:
        button = 4 if pixels > 0 else 5
    return WheelClicks(button=button, clicks=clicks)
