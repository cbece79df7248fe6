"""Resize screenshots to an image-token budget before they reach the vision encoder.

Qwen3-VL uses 16 px patches merged 2x2, so one image token covers 32x32 px and both
sides must be multiples of 32. The backend resizes on its side, inside mtmd's limits, so
mtmd never resizes again and the encoder receives exactly the size chosen here.

The whole screenshot is scaled, with no crop or padding, so a point on the model's
0..1000 grid means the same place in the original and in the resized image. Callers
map grid answers with the original screenshot's size (see `agent.geometry`).
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

TOKEN_PIXELS = 32
# Hugging Face's Qwen-VL processor rejects aspect ratios above 200; beyond that the token
# grid is clamped to 200:1 and the image is stretched to fit, which the relative grid
# tolerates.
MAX_ASPECT = 200


@dataclass(frozen=True)
class TokenBudget:
    """The range of image tokens one screenshot may use, one token per 32x32 px."""

    min_tokens: int = 1024
    max_tokens: int = 2048

    def __post_init__(self) -> None:
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError(
                f"image token budget {self.min_tokens}..{self.max_tokens} is invalid; "
                "use 1 <= image_min_tokens <= image_max_tokens"
            )


def fit_to_budget(width: int, height: int, budget: TokenBudget) -> tuple[int, int]:
    """Return the (width, height) in pixels, multiples of 32, that `budget` allows for an image.

    Follows Qwen's smart resize: round each side to a multiple of 32, then scale both
    sides by one factor into the budget. Sides never drop below 32 px, and extreme
    aspect ratios are clamped so the token count stays within `max_tokens`.
    """
    if width < 1 or height < 1:
        raise ValueError(
            f"image size {width}x{height} is invalid; both sides must be at least 1 px"
        )
    columns = max(1, round(width / TOKEN_PIXELS))
    rows = max(1, round(height / TOKEN_PIXELS))
    area = width * height / TOKEN_PIXELS**2
    if columns * rows > budget.max_tokens:
        scale = math.sqrt(budget.max_tokens / area)
        columns = max(1, _floor(width * scale / TOKEN_PIXELS))
        rows = max(1, _floor(height * scale / TOKEN_PIXELS))
    elif columns * rows < budget.min_tokens:
        scale = math.sqrt(budget.min_tokens / area)
        columns = _ceil(width * scale / TOKEN_PIXELS)
        rows = _ceil(height * scale / TOKEN_PIXELS)
    columns, rows = _clamp_grid(columns, rows, budget.max_tokens)
    return columns * TOKEN_PIXELS, rows * TOKEN_PIXELS


def _floor(value: float) -> int:
    # The tolerance keeps 32.000000001, a rounding error of an exact fit, from becoming 33.
    return math.floor(value + 1e-6)


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-6)


def _clamp_grid(columns: int, rows: int, max_tokens: int) -> tuple[int, int]:
    """Clamp a token grid to MAX_ASPECT and to max_tokens, shrinking the longer side first."""
    columns = min(columns, rows * MAX_ASPECT)
    rows = min(rows, columns * MAX_ASPECT)
    if columns >= rows:
        columns = min(columns, max(1, max_tokens // rows))
        rows = min(rows, max(1, max_tokens // columns))
    else:
        rows = min(rows, max(1, max_tokens // columns))
        columns = min(columns, max(1, max_tokens // rows))
    return columns, rows


def image_tokens(width: int, height: int) -> int:
    """Return the image tokens of an image whose sides are multiples of 32 px."""
    return (width // TOKEN_PIXELS) * (height // TOKEN_PIXELS)


def resize_to_budget(image: Image.Image, budget: TokenBudget) -> Image.Image:
    """Return `image` as RGB, resized (bicubic, as mtmd does) to the size `fit_to_budget` picks."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    size = fit_to_budget(rgb.width, rgb.height, budget)
    if size == rgb.size:
        return rgb
    return rgb.resize(size, Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class PreparedImage:
    """A screenshot resized to the budget, and its content hash for the KV cache."""

    image: Image.Image
    key: str


def prepare_image(image: Image.Image, budget: TokenBudget) -> PreparedImage:
    """Resize `image` to `budget` and hash its RGB pixels and size."""
    resized = resize_to_budget(image, budget)
    digest = hashlib.sha1(resized.tobytes(), usedforsecurity=False)
    digest.update(f"{resized.width}x{resized.height}".encode())
    return PreparedImage(image=resized, key=digest.hexdigest())


class PreparedImageCache:
    """Prepared screenshots, kept while their originals are alive.

    An agent sends the same history screenshots at every step, and resizing and hashing
    a 1280x800 screenshot costs about 25 ms on one CPU core. Entries are found by the
    original's identity, so an image modified in place after a call is not seen as
    changed. The agent draws its pointer markers only on copies.
    """

    def __init__(self, budget: TokenBudget, max_entries: int = 32) -> None:
        self.budget = budget
        self._max_entries = max_entries
        self._entries: OrderedDict[int, tuple[weakref.ref[Image.Image], PreparedImage]] = (
            OrderedDict()
        )

    def prepare(self, image: Image.Image) -> PreparedImage:
        """Return the prepared form of `image`, from the cache when the same object was seen."""
        entry = self._entries.get(id(image))
        if entry is not None and entry[0]() is image:
            self._entries.move_to_end(id(image))
            return entry[1]
        prepared = prepare_image(image, self.budget)
        self._entries[id(image)] = (weakref.ref(image), prepared)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return prepared
