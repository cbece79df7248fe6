"""Option types shared by the `agent` subcommands, each raising argparse's error with the fix."""

from __future__ import annotations

import argparse
import math


def size(text: str) -> tuple[int, int]:
    """Parse WIDTHxHEIGHT, both sides whole numbers of at least 1."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is invalid; write WIDTHxHEIGHT, for example 1280x800"
        ) from exc
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} is invalid; both sides must be at least 1")
    return width, height


def token_range(text: str) -> tuple[int, int]:
    """Parse MIN:MAX image tokens, with 1 <= MIN <= MAX."""
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"image tokens {text!r} are invalid; write MIN:MAX, for example 1024:2048"
        ) from exc
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(
            f"image tokens {text!r} are invalid; MIN must be at least 1 and at most MAX"
        )
    return low, high


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is invalid; use a number above 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid; use 1 or more")
    return value


def gpu_layers(text: str) -> int:
    """Parse a layer count for GPU offload: -1 for all layers, 0 for none, or N."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < -1:
        raise argparse.ArgumentTypeError(f"{value} is invalid; use -1 for all layers, 0 or more")
    return value
