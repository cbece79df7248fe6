"""The `computer_use` actions Qwen3-VL was trained to emit, as pydantic models.

Action and argument names are the model's own, so a reply validates directly:
`{"action": "left_click", "coordinate": [500, 250]}`. `Action` is a discriminated
union on `action`. Coordinates are on the 0..1000 grid (see `agent.geometry`).

Every model reply reaches an executor only through `parse_action` (or the reply
parser built on it), so executors can trust these types.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from agent.errors import InvalidReplyError, KeyNameError
from agent.geometry import GRID_MAX
from agent.keys import normalise_keys

TOOL_NAME = "computer_use"


def _check_coordinate(value: Any) -> tuple[float, float]:
    """Accept exactly two finite numbers in 0..1000; reject everything else with a model-facing message."""
    hint = f"a coordinate is [x, y]: two numbers from 0 to {GRID_MAX}"
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"coordinate {_show(value)} is invalid; {hint}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ValueError(
                f"coordinate {_show(value)} is invalid: {_show(item)} is not a number; {hint}"
            )
        if not math.isfinite(item):
            raise ValueError(
                f"coordinate {_show(value)} is invalid: {_show(item)} is not finite; {hint}"
            )
        if not 0 <= item <= GRID_MAX:
            raise ValueError(f"coordinate {_show(value)} is out of range; {hint}")
    return float(value[0]), float(value[1])


def _check_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{_show(value)} is not a finite number")
    return float(value)


def _compact(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_compact(item) for item in value]
    return value


def _show(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return repr(value)


_COORDINATE_SCHEMA = {
    "type": "array",
    "items": {"type": "number", "minimum": 0, "maximum": GRID_MAX},
    "minItems": 2,
    "maxItems": 2,
}

Coordinate: TypeAlias = Annotated[
    tuple[float, float],
    BeforeValidator(_check_coordinate),
    WithJsonSchema(_COORDINATE_SCHEMA),
]
FiniteNumber: TypeAlias = Annotated[
    float, BeforeValidator(_check_number), WithJsonSchema({"type": "number"})
]

# One scroll moves at most this many pixels, about ten screens. A larger amount is a
# model error, and on X11 it would queue hundreds of wheel clicks.
MAX_SCROLL_PIXELS = 10000
ScrollPixels: TypeAlias = Annotated[
    float,
    BeforeValidator(_check_number),
    Field(ge=-MAX_SCROLL_PIXELS, le=MAX_SCROLL_PIXELS),
    WithJsonSchema({"type": "number", "minimum": -MAX_SCROLL_PIXELS, "maximum": MAX_SCROLL_PIXELS}),
]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def arguments(self) -> dict[str, Any]:
        """Return the arguments as the model writes them: `action` first, whole numbers as ints."""
        dumped = self.model_dump(mode="json", exclude_none=True)
        ordered = {"action": dumped.pop("action"), **dumped}
        return {key: _compact(value) for key, value in ordered.items()}


class Key(_Action):
    """Press the keys in order and release them in reverse: a chord such as ctrl+c."""

    action: Literal["key"]
    keys: list[str]

    @field_validator("keys", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> list[str]:
        if not isinstance(value, str | list):
            raise ValueError(
                f"keys {_show(value)} is invalid; give a list of key names such as ['ctrl', 'c']"
            )
        try:
            return normalise_keys(value)
        except KeyNameError as exc:
            raise ValueError(str(exc)) from exc


class Type(_Action):
    """Type a string."""

    action: Literal["type"]
    text: str


class MouseMove(_Action):
    action: Literal["mouse_move"]
    coordinate: Coordinate


class _Click(_Action):
    # Without a coordinate the click happens where the pointer is.
    coordinate: Coordinate | None = None


class LeftClick(_Click):
    action: Literal["left_click"]


class RightClick(_Click):
    action: Literal["right_click"]


class MiddleClick(_Click):
    action: Literal["middle_click"]


class DoubleClick(_Click):
    action: Literal["double_click"]


class TripleClick(_Click):
    action: Literal["triple_click"]


class LeftClickDrag(_Action):
    """Drag from the current pointer position to `coordinate`."""

    action: Literal["left_click_drag"]
    coordinate: Coordinate


class Scroll(_Action):
    """Scroll vertically; positive `pixels` scrolls up. The optional coordinate moves the pointer first."""

    action: Literal["scroll"]
    pixels: ScrollPixels
    coordinate: Coordinate | None = None


class HScroll(_Action):
    """Scroll horizontally; positive `pixels` scrolls left."""

    action: Literal["hscroll"]
    pixels: ScrollPixels
    coordinate: Coordinate | None = None


class Wait(_Action):
    """Wait a number of seconds."""

    action: Literal["wait"]
    time: Annotated[
        float,
        BeforeValidator(_check_number),
        Field(ge=0, le=60),
        WithJsonSchema({"type": "number", "minimum": 0, "maximum": 60}),
    ]


class Terminate(_Action):
    """End the task, reporting success or failure."""

    action: Literal["terminate"]
    status: Literal["success", "failure"]


class Answer(_Action):
    """Return an answer to a question and end the task."""

    action: Literal["answer"]
    text: str


Action: TypeAlias = Annotated[
    Key
    | Type
    | MouseMove
    | LeftClick
    | RightClick
    | MiddleClick
    | DoubleClick
    | TripleClick
    | LeftClickDrag
    | Scroll
    | HScroll
    | Wait
    | Terminate
    | Answer,
    Field(discriminator="action"),
]

ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)
ACTION_NAMES: tuple[str, ...] = (
    "key",
    "type",
    "mouse_move",
    "left_click",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "left_click_drag",
    "scroll",
    "hscroll",
    "wait",
    "terminate",
    "answer",
)
POINTER_ACTIONS = (
    MouseMove,
    LeftClick,
    RightClick,
    MiddleClick,
    DoubleClick,
    TripleClick,
    LeftClickDrag,
    Scroll,
    HScroll,
)
FINAL_ACTIONS = (Terminate, Answer)


def parse_action(arguments: Any) -> Action:
    """Validate decoded `computer_use` arguments into an action.

    Raises `InvalidReplyError` with one message fit to send back to the model.
    """
    if not isinstance(arguments, dict):
        raise InvalidReplyError(
            f"the arguments {_show(arguments)} are not a JSON object; write "
            '{"action": "left_click", "coordinate": [x, y]}'
        )
    name = arguments.get("action")
    if name not in ACTION_NAMES:
        raise InvalidReplyError(
            f"unknown action {_show(name)}; use one of: {', '.join(ACTION_NAMES)}"
        )
    try:
        return ACTION_ADAPTER.validate_python(arguments)
    except ValidationError as exc:
        raise InvalidReplyError(f"invalid {name} action: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(item) for item in error["loc"][1:]) or "arguments"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"the argument {location!r} is missing")
        elif error["type"] == "extra_forbidden":
            parts.append(f"the argument {location!r} is not allowed")
        elif location in message or message.startswith(
            ("coordinate", "keys", "unknown key", "invalid key")
        ):
            parts.append(message)
        else:
            parts.append(f"{location}: {message}")
    return "; ".join(dict.fromkeys(parts))


def action_point(action: Action) -> tuple[float, float] | None:
    """Return the grid coordinate an action targets, or None."""
    coordinate = getattr(action, "coordinate", None)
    return None if coordinate is None else (coordinate[0], coordinate[1])


def tool_call_schema() -> dict[str, Any]:
    """Return the JSON schema of one `computer_use` call, for constrained decoding."""
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [TOOL_NAME]},
            "arguments": ACTION_ADAPTER.json_schema(),
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def action_schema() -> dict[str, Any]:
    """Return the JSON schema of the action union."""
    return ACTION_ADAPTER.json_schema()


def describe_action(action: Action) -> str:
    """Describe an action in plain words, for logs and the approval screen."""
    match action:
        case Key(keys=keys):
            return f"Press {'+'.join(keys)}"
        case Type(text=text):
            shown = text.rstrip("\n")
            suffix = " and press Enter" if text.endswith("\n") else ""
            return f"Type “{shown}”{suffix}"
        case MouseMove(coordinate=c):
            return f"Move the pointer to {_grid(c)}"
        case LeftClick() | RightClick() | MiddleClick() | DoubleClick() | TripleClick():
            verb = action.action.replace("_click", "").replace("left", "").strip()
            label = f"{verb.capitalize()}-click" if verb else "Click"
            where = f" at {_grid(action.coordinate)}" if action.coordinate else " at the pointer"
            return label + where
        case LeftClickDrag(coordinate=c):
            return f"Drag to {_grid(c)}"
        case Scroll(pixels=p) | HScroll(pixels=p):
            direction = (
                ("up" if p > 0 else "down")
                if action.action == "scroll"
                else ("left" if p > 0 else "right")
            )
            where = f" at {_grid(action.coordinate)}" if action.coordinate else ""
            return f"Scroll {direction} {abs(p):g} px{where}"
        case Wait(time=t):
            return f"Wait {t:g} s"
        case Terminate(status=s):
            return f"Finish the task ({s})"
        case Answer(text=text):
            return f"Answer “{text}”"
    raise AssertionError(f"unhandled action {action!r}")


def _grid(coordinate: tuple[float, float] | None) -> str:
    if coordinate is None:
        return "the pointer"
    return f"[{coordinate[0]:g}, {coordinate[1]:g}]"
