"""Turn what a person typed into the edit field into a replacement action.

The field accepts three forms:

- JSON arguments, exactly as the model writes them, with coordinates on the 0..1000 grid:
  `{"action": "left_click", "coordinate": [500, 250]}`;
- for an action with a coordinate, a new input point `x, y` in the same units as the
  "input point" the screen shows, mapped to the grid through the observation's geometry;
- for `type`, `answer` and `key`, the new text or keys. In typed text, `\\n` stands for
  Enter and `\\\\` for a backslash, because the field itself cannot hold a line break.
"""

from __future__ import annotations

import json
import re

from agent.actions import Action, Answer, Key, Type, action_point, parse_action
from agent.approval import ApprovalRequest
from agent.errors import GeometryError, InvalidReplyError

_POINT = re.compile(r"^\(?\s*(-?\d+(?:\.\d+)?)\s*[, ]\s*(-?\d+(?:\.\d+)?)\s*\)?$")


class EditError(ValueError):
    """An edit that cannot become an action. The message is shown to the person as is."""


def initial_edit_text(request: ApprovalRequest) -> str:
    """Return the text the edit field starts with: the point, the text, or the JSON arguments."""
    action = request.action
    if isinstance(action, Type | Answer):
        return _escape(action.text)
    if isinstance(action, Key):
        return "+".join(action.keys)
    if request.point is not None and action_point(action) is not None:
        return f"{request.point[0]}, {request.point[1]}"
    return json.dumps(action.arguments())


def parse_edit(text: str, request: ApprovalRequest) -> Action:
    """Build the replacement action, or raise `EditError` saying what to type instead."""
    stripped = text.strip()
    if not stripped:
        raise EditError("the edit is empty; type a new value or press Escape to cancel")
    if stripped.startswith("{"):
        return _parse_json(stripped)
    action = request.action
    if isinstance(action, Type | Answer):
        return action.model_copy(update={"text": _unescape(text)})
    if isinstance(action, Key):
        return _parse_json(json.dumps({"action": "key", "keys": stripped}))
    # A click without a coordinate acts at the pointer, so a typed point gives it one.
    if action_point(action) is not None or "coordinate" in type(action).model_fields:
        return _move_point(stripped, request)
    raise EditError(
        f"a {action.action} action has no coordinate or text to change; "
        'type JSON arguments such as {"action": "wait", "time": 2}'
    )


def _parse_json(text: str) -> Action:
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EditError(f"invalid JSON at character {exc.pos + 1}: {exc.msg}") from exc
    try:
        return parse_action(arguments)
    except InvalidReplyError as exc:
        raise EditError(str(exc)) from exc


def _move_point(text: str, request: ApprovalRequest) -> Action:
    """Replace the action's coordinate with the grid position of the input point typed."""
    match = _POINT.match(text)
    if match is None:
        raise EditError(
            f"{text!r} is not a point; type the input point as x, y, for example 812, 430"
        )
    x, y = float(match.group(1)), float(match.group(2))
    try:
        grid = request.observation.geometry.point_to_grid(x, y)
    except GeometryError as exc:
        raise EditError(str(exc)) from exc
    arguments = request.action.arguments()
    arguments["coordinate"] = [round(grid[0], 1), round(grid[1], 1)]
    return _parse_json(json.dumps(arguments))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(text: str) -> str:
    parts = re.split(r"(\\\\|\\n)", text)
    return "".join({"\\\\": "\\", "\\n": "\n"}.get(part, part) for part in parts)
