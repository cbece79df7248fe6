"""Render a recording as one self-contained HTML report.

The report starts with the run's task, models, settings, executor, screen geometry
and outcome. Each step then shows its screenshot with the action's target drawn on
it, the reasoning, the instruction, the action, the approval decision, the
executor's result and the timings. Screenshots are downscaled and embedded as base64 data URIs,
so the file has no outside references and can be mailed or attached to an issue.

Recorded text is untrusted, because a web page can put any text in front of the
model. The template is rendered with autoescaping, so every value is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image, ImageDraw, UnidentifiedImageError

from agent.actions import Action, LeftClickDrag, action_point, describe_action, parse_action
from agent.errors import ConfigError, GeometryError, InvalidReplyError
from agent.geometry import ScreenGeometry
from agent.recording import RecordedStep, Recording

logger = logging.getLogger(__name__)

TEMPLATE = "report.html.jinja"
DEFAULT_NAME = "report.html"
# Screenshots wider than this many pixels are downscaled for the report.
MAX_IMAGE_WIDTH = 960
TIMING_PHASES = ("observe", "hash", "model", "parse", "approval", "execute")

# The marker of an action that ran, and of a proposal that did not (skipped, denied).
RAN_COLOUR = (230, 0, 60)
PROPOSED_COLOUR = (255, 150, 0)
# A white outline under each marker line keeps it visible on dark screens.
HALO_COLOUR = (255, 255, 255)
RING_RADIUS = 11
LINE_WIDTH = 3


@dataclass(frozen=True)
class Marker:
    """The target of an action on a screenshot, in that screenshot's pixels."""

    target: tuple[float, float]
    # Where a drag started, when the pointer position before the step is known.
    start: tuple[float, float] | None = None
    # False for a proposed action that never ran.
    ran: bool = True


@dataclass(frozen=True)
class CallView:
    """One model call of a step, as the report shows it."""

    role: str
    slot: str
    model: str
    status: str
    error: str
    seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    reply: str


@dataclass(frozen=True)
class StepView:
    """One step, as the report shows it."""

    number: int
    outcome: str
    decider: str
    image: str | None
    image_note: str
    marker_note: str
    instruction: str
    reasoning: str
    action: str
    action_json: str
    proposed: str
    proposed_json: str
    point: str
    risk: str
    approval: dict[str, str] | None
    result: dict[str, str] | None
    feedback: str
    timings: list[tuple[str, float]]
    calls: list[CallView]


# Writing the report.


def write_report(
    recording: Recording,
    output: str | Path | None = None,
    *,
    max_image_width: int = MAX_IMAGE_WIDTH,
) -> Path:
    """Write the HTML report of a recording and return its path.

    The default output is `report.html` inside the recording. Raises `ConfigError`
    when the output cannot be written.
    """
    target = Path(output) if output is not None else recording.path / DEFAULT_NAME
    html = render_report(recording, max_image_width=max_image_width)
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {target}: {exc}; choose another file with -o"
        ) from exc
    logger.info("wrote the report of %s to %s", recording.path, target)
    return target


def render_report(recording: Recording, *, max_image_width: int = MAX_IMAGE_WIDTH) -> str:
    """Return the HTML report of a recording as one string."""
    steps = list(_step_views(recording, max_image_width))
    return _template().render(header=_header(recording), steps=steps)


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("agent", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE)


# The header.


def _header(recording: Recording) -> dict[str, Any]:
    manifest = recording.manifest
    settings = _mapping(manifest.get("settings"))
    return {
        "path": str(recording.path),
        "task": recording.task,
        "labels": [str(label) for label in manifest.get("labels") or []],
        "created_at": str(manifest.get("created_at") or ""),
        "finished_at": str(manifest.get("finished_at") or ""),
        "models": _models(_mapping(manifest.get("models"))),
        "settings_summary": _settings_summary(settings),
        "settings": _flatten(settings),
        "executor": _flatten(_mapping(manifest.get("executor"))),
        "screen": _screen_text(manifest.get("screen")),
        "versions": _flatten(_mapping(manifest.get("versions"))),
        "outcome": _outcome(manifest.get("outcome")),
        "recorded_steps": len(recording.steps),
        "truncated": recording.truncated,
    }


def _models(models: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for slot, entry in models.items():
        entry = _mapping(entry)
        rows.append(
            {
                "slot": str(slot),
                "name": str(entry.get("name") or ""),
                "path": str(entry.get("path") or "no file"),
                "sha256": str(entry.get("sha256") or "not recorded"),
            }
        )
    return rows


def _settings_summary(settings: dict[str, Any]) -> str:
    if not settings:
        return "not recorded"
    history = _mapping(settings.get("history"))
    parts = [
        f"mode {settings.get('mode', '?')}",
        _limit(settings.get("max_steps", "?"), "no step limit", "at most {} step", "s"),
        _limit(settings.get("max_seconds"), "no time limit", "at most {} s"),
        _limit(settings.get("max_tokens"), "no token limit", "at most {} generated token", "s"),
        _limit(history.get("images", "?"), "", "{} screenshot", "s") + " in the history",
    ]
    return ", ".join(parts)


def _limit(value: Any, unlimited: str, limited: str, plural_suffix: str = "") -> str:
    """Fill `value` into `limited`, adding `plural_suffix` unless the value is 1."""
    if value is None:
        return unlimited
    return limited.format(value) + ("" if value == 1 else plural_suffix)


def _screen_text(screen: Any) -> str:
    if not isinstance(screen, dict):
        return "not recorded (the run ended before its first step was written)"
    text = f"{screen.get('width')}x{screen.get('height')} px, scale {screen.get('scale')}"
    return text + f", origin ({screen.get('origin_x')}, {screen.get('origin_y')})"


def _outcome(outcome: Any) -> dict[str, Any] | None:
    if not isinstance(outcome, dict):
        return None
    evaluation = _mapping(outcome.get("evaluation"))
    return {
        "status": str(outcome.get("status", "")),
        "steps": outcome.get("steps"),
        "seconds": outcome.get("seconds"),
        "message": str(outcome.get("message") or ""),
        "answer": outcome.get("answer"),
        "generated_tokens": outcome.get("generated_tokens"),
        "raw_reward": evaluation.get("raw_reward"),
        "has_raw_reward": "raw_reward" in evaluation,
        "evaluation": _flatten(evaluation),
    }


# The steps.


def _step_views(recording: Recording, max_image_width: int) -> Iterator[StepView]:
    pointer = _PointerTracker(recording.manifest)
    for step in recording.steps:
        geometry = _step_geometry(step, recording.manifest)
        proposed = _proposed(step)
        marker = _marker(step, step.action or proposed, geometry, pointer.position)
        yield _step_view(step, proposed, geometry, marker, max_image_width)
        pointer.update(step)


def _step_view(
    step: RecordedStep,
    proposed: Action | None,
    geometry: ScreenGeometry | None,
    marker: Marker | None,
    max_image_width: int,
) -> StepView:
    raw = step.raw
    action = step.action
    image, image_note = _screenshot(step, geometry, marker, max_image_width)
    return StepView(
        number=step.step,
        outcome=step.outcome,
        decider=str(raw.get("decider") or ""),
        image=image,
        image_note=image_note,
        marker_note=_marker_note(marker, action or proposed),
        instruction=str(raw.get("instruction") or ""),
        reasoning=str(raw.get("reasoning") or ""),
        action=describe_action(action) if action else "",
        action_json=_json(raw.get("action")) if action else "",
        proposed=describe_action(proposed) if proposed and proposed != action else "",
        proposed_json=_json(raw.get("proposed")) if proposed and proposed != action else "",
        point=_point_text(step.point),
        risk=str(raw.get("risk") or ""),
        approval=_approval(raw.get("approval")),
        result=_result(raw.get("result")),
        feedback=str(raw.get("feedback") or ""),
        timings=_timings(raw.get("timings")),
        calls=[_call_view(call.raw) for call in step.calls],
    )


def _proposed(step: RecordedStep) -> Action | None:
    arguments = step.raw.get("proposed")
    if arguments is None:
        return None
    try:
        return parse_action(arguments)
    except InvalidReplyError as exc:
        logger.warning("step %d: the proposed action is invalid: %s", step.step, exc)
        return None


def _approval(approval: Any) -> dict[str, str] | None:
    if not isinstance(approval, dict):
        return None
    edited = approval.get("action")
    return {
        "verdict": str(approval.get("verdict", "")),
        "source": str(approval.get("source", "")),
        "hint": str(approval.get("hint") or ""),
        "action": _json(edited) if edited else "",
    }


def _result(result: Any) -> dict[str, str] | None:
    if not isinstance(result, dict):
        return None
    return {
        "ok": "ok" if result.get("ok") else "failed",
        "reason": str(result.get("reason") or ""),
        "point": _point_text(result.get("point")),
        "new_page": "yes" if result.get("new_page") else "no",
        "extras": _json(result.get("extras")) if result.get("extras") else "",
    }


def _timings(timings: Any) -> list[tuple[str, float]]:
    """Return (phase, milliseconds) in the loop's phase order, then any phase it does not know."""
    values = _mapping(timings)
    order = [phase for phase in TIMING_PHASES if phase in values]
    order += [phase for phase in values if phase not in TIMING_PHASES]
    return [(phase, float(values[phase]) * 1000) for phase in order]


def _call_view(call: dict[str, Any]) -> CallView:
    reply = _mapping(call.get("reply"))
    usage = _mapping(reply.get("usage"))
    return CallView(
        role=str(call.get("role", "")),
        slot=str(call.get("slot", "")),
        model=str(call.get("model", "")),
        status=str(call.get("status", "")),
        error=str(call.get("error") or ""),
        seconds=float(call.get("seconds") or 0.0),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        reply=str(reply.get("text") or ""),
    )


# Geometry and the marker.


def _step_geometry(step: RecordedStep, manifest: dict[str, Any]) -> ScreenGeometry | None:
    """Return the geometry the step recorded, else the manifest's, else None."""
    for screen in (step.raw.get("screen"), manifest.get("screen")):
        if not isinstance(screen, dict):
            continue
        try:
            return ScreenGeometry(
                int(screen["width"]),
                int(screen["height"]),
                float(screen.get("scale", 1.0)),
                float(screen.get("origin_x", 0.0)),
                float(screen.get("origin_y", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("step %d: ignoring an invalid screen geometry: %s", step.step, exc)
    return None


class _PointerTracker:
    """Follows the pointer's input point from step to step, to find where a drag started.

    The browser executor starts with the pointer at (0, 0) and moves it there again on
    every new page. On a desktop the pointer is unknown until an action moves it.
    """

    def __init__(self, manifest: dict[str, Any]) -> None:
        self._browser = _mapping(manifest.get("executor")).get("kind") == "browser"
        self.position: tuple[float, float] | None = (0.0, 0.0) if self._browser else None

    def update(self, step: RecordedStep) -> None:
        result = step.raw.get("result")
        if not isinstance(result, dict):
            return
        if result.get("new_page") and self._browser:
            self.position = (0.0, 0.0)
        elif result.get("point") is not None and step.point is not None:
            self.position = (float(step.point[0]), float(step.point[1]))


def _marker(
    step: RecordedStep,
    action: Action | None,
    geometry: ScreenGeometry | None,
    pointer: tuple[float, float] | None,
) -> Marker | None:
    """Return where the step's action (or its proposal) acted, in screenshot pixels."""
    if action is None or geometry is None:
        return None
    try:
        target = _target_pixel(action, step, geometry)
    except GeometryError as exc:
        logger.warning("step %d: cannot place the marker: %s", step.step, exc)
        return None
    if target is None:
        return None
    start = None
    if isinstance(action, LeftClickDrag) and pointer is not None:
        try:
            start = geometry.point_to_pixel(*pointer)
        except GeometryError:
            # The pointer was off this screenshot, for example on another monitor.
            start = None
    return Marker(target, start, ran=step.action is not None)


def _target_pixel(
    action: Action, step: RecordedStep, geometry: ScreenGeometry
) -> tuple[float, float] | None:
    grid_point = action_point(action)
    if grid_point is not None:
        return geometry.grid_to_pixel(*grid_point)
    # A click without a coordinate acts where the pointer is, which the step recorded.
    if step.action is not None and step.point is not None:
        return geometry.point_to_pixel(*step.point)
    return None


def _marker_note(marker: Marker | None, action: Action | None) -> str:
    if marker is None:
        return ""
    x, y = marker.target
    text = f"marker at pixel ({x:.0f}, {y:.0f})"
    if isinstance(action, LeftClickDrag):
        text += ", arrow from the drag start" if marker.start else "; the drag start is unknown"
    if not marker.ran:
        text += "; the proposed action did not run"
    return text


def draw_marker(image: Image.Image, marker: Marker, scale: float = 1.0) -> None:
    """Draw a ring and crosshair at the marker's target (and an arrow for drags), in place.

    `scale` maps the marker's screenshot pixels onto `image`, for downscaled copies.
    """
    colour = RAN_COLOUR if marker.ran else PROPOSED_COLOUR
    draw = ImageDraw.Draw(image)
    x, y = marker.target[0] * scale, marker.target[1] * scale
    if marker.start is not None:
        start = (marker.start[0] * scale, marker.start[1] * scale)
        _draw_arrow(draw, start, (x, y), colour)
    box = (x - RING_RADIUS, y - RING_RADIUS, x + RING_RADIUS, y + RING_RADIUS)
    reach = RING_RADIUS + 6
    for fill, extra in ((HALO_COLOUR, 2), (colour, 0)):
        draw.ellipse(box, outline=fill, width=LINE_WIDTH + extra)
        draw.line((x - reach, y, x + reach, y), fill=fill, width=LINE_WIDTH - 1 + extra)
        draw.line((x, y - reach, x, y + reach), fill=fill, width=LINE_WIDTH - 1 + extra)


def _draw_arrow(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    colour: tuple[int, int, int],
) -> None:
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = (dx * dx + dy * dy) ** 0.5
    draw.ellipse((start[0] - 4, start[1] - 4, start[0] + 4, start[1] + 4), fill=colour)
    if length < 1:
        return
    ux, uy = dx / length, dy / length
    # The head ends at the ring, so the ring and crosshair stay readable.
    tip = (end[0] - ux * RING_RADIUS, end[1] - uy * RING_RADIUS)
    draw.line((start, tip), fill=colour, width=LINE_WIDTH)
    head = 12
    left = (tip[0] - ux * head - uy * head / 2, tip[1] - uy * head + ux * head / 2)
    right = (tip[0] - ux * head + uy * head / 2, tip[1] - uy * head - ux * head / 2)
    draw.polygon((tip, left, right), fill=colour)


# Screenshots.


def _screenshot(
    step: RecordedStep,
    geometry: ScreenGeometry | None,
    marker: Marker | None,
    max_image_width: int,
) -> tuple[str | None, str]:
    """Return the step's screenshot as a data URI with its marker drawn, and a note."""
    try:
        with Image.open(step.screenshot) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        logger.warning(
            "step %d: cannot read the screenshot %s: %s", step.step, step.screenshot, exc
        )
        return None, f"the screenshot {step.screenshot} cannot be read: {exc}"
    original_width, original_height = image.size
    note = f"{original_width}x{original_height} px"
    if original_width > max_image_width:
        height = max(1, round(original_height * max_image_width / original_width))
        image = image.resize((max_image_width, height), Image.Resampling.LANCZOS)
        note += f", shown at {image.width}x{image.height}"
    if marker is not None:
        # The marker is in the pixels of the recorded geometry, which the file on disk matches.
        source_width = geometry.width if geometry is not None else original_width
        draw_marker(image, marker, image.width / source_width)
    return encode_image(image), note


def encode_image(image: Image.Image) -> str:
    """Return an image as a data URI: PNG or JPEG, whichever is smaller.

    Screens of flat colour compress best as PNG, and photos or video as JPEG.
    """
    png = io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=85)
    if png.tell() <= jpeg.tell():
        return "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode("ascii")


# Small helpers.


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Return nested settings as (dotted key, JSON value) rows."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value if isinstance(value, str) else _json(value)))
    return rows


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _point_text(point: Any) -> str:
    if not isinstance(point, list | tuple) or len(point) != 2:
        return ""
    return f"({point[0]}, {point[1]})"
