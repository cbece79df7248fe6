"""Show the current screenshot in the terminal, with the proposed click point marked.

Two renderings:

- **graphics**: a terminal graphics protocol (Kitty's or Sixel) through `textual-image`,
  with the marker drawn into a copy of the image;
- **cells**: half-block characters ("▀" with the upper pixel as foreground and the lower
  one as background), so two image rows fit in one text row. The marker is a red cross
  of characters, which stays visible however far the image is scaled down.

`textual-image` detects the terminal's protocols when it is first imported, by writing
queries to the terminal and reading the replies. That only works before Textual takes the
terminal over, so `detect_graphics()` must run before `App.run()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PIL import Image, ImageDraw
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from agent.actions import Action, action_point
from executors.base import Observation

logger = logging.getLogger(__name__)

MARK_COLOUR = (255, 40, 40)
_MARK_STYLE = Style(color="rgb(255,255,255)", bgcolor="rgb(255,40,40)", bold=True)
_ARM_COLOUR = "rgb(255,40,40)"


@dataclass(frozen=True)
class Frame:
    """One screenshot to show, and the screenshot pixel to mark (None for no marker)."""

    image: Image.Image
    mark: tuple[float, float] | None = None


def frame_for(observation: Observation, action: Action | None) -> Frame:
    """Build the frame for an observation, marking the pixel the action's coordinate maps to."""
    grid = action_point(action) if action is not None else None
    mark = None if grid is None else observation.geometry.grid_to_pixel(*grid)
    return Frame(observation.image, mark)


def zoom_frame(frame: Frame, factor: int) -> Frame:
    """Crop the frame to 1/`factor` of its width and height, centred on the mark where possible.

    A frame without a mark is returned unchanged, because there is no point to look at.
    """
    if frame.mark is None or factor <= 1:
        return frame
    width, height = frame.image.size
    crop_width, crop_height = max(1, width // factor), max(1, height // factor)
    left = min(max(0, round(frame.mark[0] - crop_width / 2)), width - crop_width)
    top = min(max(0, round(frame.mark[1] - crop_height / 2)), height - crop_height)
    image = frame.image.crop((left, top, left + crop_width, top + crop_height))
    return Frame(image, (frame.mark[0] - left, frame.mark[1] - top))


def detect_graphics() -> bool:
    """Return True when the terminal on stdout speaks Kitty's graphics protocol or Sixel.

    Imports `textual-image`, which queries the terminal at import time; call this before
    the Textual app starts. Any failure of the query means character cells are used.
    """
    try:
        from textual_image import renderable
    except (ImportError, OSError) as exc:
        logger.warning("textual-image is unavailable, showing screenshots as text cells: %s", exc)
        return False
    return renderable.Image in (renderable.TGPImage, renderable.SixelImage)


def marked_copy(frame: Frame) -> Image.Image:
    """Return an RGB copy of the frame's image with a ring and cross drawn at the marked pixel.

    Used for graphics protocols, which show the image's own pixels. The marker is sized
    relative to the image so it stays visible once the terminal scales the image down.
    """
    image = frame.image.convert("RGB")
    if frame.mark is None:
        return image
    x, y = frame.mark
    radius = max(6, max(image.size) // 60)
    width = max(2, radius // 4)
    draw = ImageDraw.Draw(image)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=MARK_COLOUR, width=width)
    draw.line((x - 2 * radius, y, x + 2 * radius, y), fill=MARK_COLOUR, width=width)
    draw.line((x, y - 2 * radius, x, y + 2 * radius), fill=MARK_COLOUR, width=width)
    return image


def fit_cells(image_size: tuple[int, int], cells: Size) -> tuple[int, int]:
    """Return the (columns, half-block rows) that fit the image in `cells`, keeping its shape.

    A half block is about as tall as it is wide, so one text row holds two image rows.
    """
    width, height = image_size
    if width < 1 or height < 1 or cells.width < 1 or cells.height < 1:
        return 0, 0
    scale = min(cells.width / width, 2 * cells.height / height)
    columns = max(1, min(cells.width, round(width * scale)))
    rows = max(1, min(2 * cells.height, round(height * scale)))
    return columns, rows


def render_cells(frame: Frame, cells: Size) -> list[Strip]:
    """Render the frame as lines of half-block characters that fit in `cells`."""
    columns, rows = fit_cells(frame.image.size, cells)
    if columns == 0:
        return []
    if rows % 2:
        rows += 1
    small = frame.image.convert("RGB").resize((columns, rows), Image.Resampling.BILINEAR)
    data = small.tobytes()
    mark_cell = _mark_cell(frame, columns, rows)
    lines = []
    for row in range(rows // 2):
        segments = [
            _cell_segment(
                _pixel(data, columns, x, 2 * row),
                _pixel(data, columns, x, 2 * row + 1),
                _mark_glyph(mark_cell, x, row),
            )
            for x in range(columns)
        ]
        lines.append(Strip(segments, columns))
    return lines


def _pixel(data: bytes, columns: int, x: int, y: int) -> tuple[int, int, int]:
    offset = 3 * (y * columns + x)
    return data[offset], data[offset + 1], data[offset + 2]


def _mark_cell(frame: Frame, columns: int, rows: int) -> tuple[int, int] | None:
    """Return the (column, text row) holding the marked pixel."""
    if frame.mark is None:
        return None
    width, height = frame.image.size
    x = min(columns - 1, int(frame.mark[0] * columns / width))
    y = min(rows // 2 - 1, int(frame.mark[1] * rows / height) // 2)
    return x, y


def _mark_glyph(mark: tuple[int, int] | None, x: int, y: int) -> str | None:
    """Return the marker character for cell (x, y): the centre, an arm of the cross, or None."""
    if mark is None:
        return None
    dx, dy = x - mark[0], y - mark[1]
    if dx == 0 and dy == 0:
        return "┼"
    if dy == 0 and abs(dx) <= 2:
        return "─"
    if dx == 0 and abs(dy) == 1:
        return "│"
    return None


def _cell_segment(
    top: tuple[int, int, int], bottom: tuple[int, int, int], glyph: str | None
) -> Segment:
    if glyph == "┼":
        return Segment(glyph, _MARK_STYLE)
    background = f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"
    if glyph is not None:
        return Segment(glyph, Style(color=_ARM_COLOUR, bgcolor=background, bold=True))
    foreground = f"rgb({top[0]},{top[1]},{top[2]})"
    return Segment("▀", Style(color=foreground, bgcolor=background))


class ScreenshotCells(Widget):
    """The screenshot as half-block characters, re-rendered when the frame or the size changes."""

    DEFAULT_CSS = """
    ScreenshotCells { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._frame: Frame | None = None
        self._lines: list[Strip] = []
        self._rendered_for: tuple[int, Size] | None = None

    @property
    def frame(self) -> Frame | None:
        return self._frame

    def show(self, frame: Frame | None) -> None:
        self._frame = frame
        self._rendered_for = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        self._ensure_rendered()
        if y < len(self._lines):
            return self._lines[y]
        # A styled blank: the NO_COLOR filter cannot take a segment without a style.
        return Strip.blank(self.size.width, self.rich_style)

    def _ensure_rendered(self) -> None:
        if self._frame is None:
            self._lines = []
            return
        key = (id(self._frame), self.size)
        if key != self._rendered_for:
            self._lines = render_cells(self._frame, self.size)
            self._rendered_for = key


def build_graphics_widget(*, id: str) -> Widget:
    """Build a `textual-image` widget that uses the protocol `detect_graphics()` found."""
    from textual_image.widget import Image as GraphicsImage

    return GraphicsImage(id=id)


def show_frame(widget: Widget, frame: Frame | None) -> None:
    """Put a frame into either kind of screenshot widget."""
    if isinstance(widget, ScreenshotCells):
        widget.show(frame)
        return
    widget.image = None if frame is None else marked_copy(frame)  # type: ignore[attr-defined]
