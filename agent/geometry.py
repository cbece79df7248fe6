"""Map between the model's 0..1000 grid, screenshot pixels and input points.

Three coordinate spaces are kept apart:

- the **grid**: Qwen3-VL answers on 0..1000 in each axis, whatever the image size;
- **screenshot pixels**: the pixels of the image the model saw;
- **input points**: what the mouse API takes (logical pixels, CSS pixels in a browser).
  One input point covers `scale` screenshot pixels, and the image's top-left corner
  sits at `origin` in input points (negative on a monitor left of or above the primary).

Rounding: grid value `g` maps linearly onto the closed range of pixel or point
centres, `g / 1000 * (size - 1)`, so 0 is the first and 1000 the last pixel or
point and nothing on the grid lands off the screen. Qwen's own code divides by
1000 or 999 in different places; the difference is at most 0.1 %, about 2 px on a
1920-pixel screen. Input points are rounded half up to whole points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.errors import GeometryError

GRID_MAX = 1000


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def check_grid_point(x: float, y: float) -> None:
    """Raise `GeometryError` unless (x, y) is a finite point on the 0..1000 grid."""
    for name, value in (("x", x), ("y", y)):
        if not math.isfinite(value) or not 0 <= value <= GRID_MAX:
            raise GeometryError(
                f"grid {name} {value!r} is outside the screen; use a number from 0 to {GRID_MAX}"
            )


@dataclass(frozen=True)
class ScreenGeometry:
    """The screenshot the model saw and where it sits on the screen.

    `width` and `height` are the screenshot's size in pixels; `scale` is screenshot
    pixels per input point (2 on a HiDPI screen); `origin_x` and `origin_y` are the
    input-point position of the screenshot's top-left corner.
    """

    width: int
    height: int
    scale: float = 1.0
    origin_x: float = 0.0
    origin_y: float = 0.0

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise GeometryError(
                f"screenshot size {self.width}x{self.height} is invalid; both sides must be at least 1 px"
            )
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise GeometryError(
                f"scale {self.scale!r} is invalid; use a positive number such as 1 or 2"
            )
        if not (math.isfinite(self.origin_x) and math.isfinite(self.origin_y)):
            raise GeometryError(
                f"origin ({self.origin_x}, {self.origin_y}) is invalid; use finite numbers"
            )

    @property
    def width_points(self) -> int:
        """Whole input points the screenshot covers horizontally, a partial last point included."""
        return _point_count(self.width, self.scale)

    @property
    def height_points(self) -> int:
        """Whole input points the screenshot covers vertically, a partial last point included."""
        return _point_count(self.height, self.scale)

    # Grid -> screenshot pixels -> input points.

    def grid_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Map a grid point to screenshot pixels, unrounded."""
        check_grid_point(x, y)
        return x / GRID_MAX * (self.width - 1), y / GRID_MAX * (self.height - 1)

    def grid_to_point(self, x: float, y: float) -> tuple[int, int]:
        """Map a grid point to whole input points, rounded half up."""
        check_grid_point(x, y)
        px = self.origin_x + x / GRID_MAX * _span(self.width_points)
        py = self.origin_y + y / GRID_MAX * _span(self.height_points)
        return round_half_up(px), round_half_up(py)

    def pixel_to_point(self, x: float, y: float) -> tuple[float, float]:
        """Map screenshot pixels to input points, unrounded. Rejects pixels off the image."""
        self._check_pixel(x, y)
        return self.origin_x + x / self.scale, self.origin_y + y / self.scale

    # Input points -> screenshot pixels -> grid.

    def point_to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Map input points to screenshot pixels, unrounded. Rejects points off the region."""
        self.check_point(x, y)
        return (x - self.origin_x) * self.scale, (y - self.origin_y) * self.scale

    def point_to_grid(self, x: float, y: float) -> tuple[float, float]:
        """Map input points to the grid, unrounded. Rejects points off the region."""
        self.check_point(x, y)
        return (
            _fraction(x - self.origin_x, self.width_points) * GRID_MAX,
            _fraction(y - self.origin_y, self.height_points) * GRID_MAX,
        )

    def pixel_to_grid(self, x: float, y: float) -> tuple[float, float]:
        """Map screenshot pixels to the grid, unrounded. Rejects pixels off the image."""
        self._check_pixel(x, y)
        return _fraction(x, self.width) * GRID_MAX, _fraction(y, self.height) * GRID_MAX

    @property
    def last_point(self) -> tuple[float, float]:
        """The largest input point on the captured region: the last whole point or the last pixel."""
        return (
            self.origin_x + max(_span(self.width_points), (self.width - 1) / self.scale),
            self.origin_y + max(_span(self.height_points), (self.height - 1) / self.scale),
        )

    def contains_point(self, x: float, y: float) -> bool:
        """Tell whether an input point lies on the captured region, its last point included."""
        last_x, last_y = self.last_point
        return self.origin_x <= x <= last_x and self.origin_y <= y <= last_y

    def check_point(self, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y)) or not self.contains_point(x, y):
            last_x, last_y = self.last_point
            raise GeometryError(
                f"input point ({x}, {y}) is outside the captured region from "
                f"({self.origin_x:g}, {self.origin_y:g}) to ({last_x:g}, {last_y:g})"
            )

    def _check_pixel(self, x: float, y: float) -> None:
        if not (0 <= x <= self.width - 1 and 0 <= y <= self.height - 1):
            raise GeometryError(
                f"pixel ({x}, {y}) is outside the {self.width}x{self.height} screenshot; "
                f"use 0..{self.width - 1} and 0..{self.height - 1}"
            )

    def describe(self) -> str:
        return f"{self.width}x{self.height} px, scale {self.scale:g}, origin ({self.origin_x:g}, {self.origin_y:g})"


def _point_count(pixels: int, scale: float) -> int:
    # At a fractional scale such as 1.25 a 1366-pixel screenshot covers 1092.8 points,
    # so point 1092 is still partly on the image.
    return max(1, math.ceil(pixels / scale - 1e-9))


def _span(size: float) -> float:
    """Distance from the first to the last pixel or point centre along one side."""
    return max(size - 1, 0.0)


def _fraction(offset: float, size: float) -> float:
    span = _span(size)
    return 0.0 if span == 0 else offset / span
