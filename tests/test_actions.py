"""The 14 `computer_use` actions: validation, the JSON schema and plain-word descriptions."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from agent import actions as a
from agent.errors import InvalidReplyError

VALID = [
    ({"action": "key", "keys": ["ctrl", "c"]}, a.Key),
    ({"action": "type", "text": "hello\n"}, a.Type),
    ({"action": "mouse_move", "coordinate": [10, 990]}, a.MouseMove),
    ({"action": "left_click", "coordinate": [0, 1000]}, a.LeftClick),
    ({"action": "left_click"}, a.LeftClick),
    ({"action": "right_click", "coordinate": [1.5, 2.25]}, a.RightClick),
    ({"action": "middle_click", "coordinate": [3, 4]}, a.MiddleClick),
    ({"action": "double_click", "coordinate": [3, 4]}, a.DoubleClick),
    ({"action": "triple_click", "coordinate": [3, 4]}, a.TripleClick),
    ({"action": "left_click_drag", "coordinate": [700, 700]}, a.LeftClickDrag),
    ({"action": "scroll", "pixels": -300}, a.Scroll),
    ({"action": "hscroll", "pixels": 120, "coordinate": [500, 500]}, a.HScroll),
    ({"action": "wait", "time": 1.5}, a.Wait),
    ({"action": "terminate", "status": "success"}, a.Terminate),
    ({"action": "answer", "text": "42"}, a.Answer),
]


def test_all_fourteen_actions_covered() -> None:
    assert {kind for _, kind in VALID} == {
        a.Key,
        a.Type,
        a.MouseMove,
        a.LeftClick,
        a.RightClick,
        a.MiddleClick,
        a.DoubleClick,
        a.TripleClick,
        a.LeftClickDrag,
        a.Scroll,
        a.HScroll,
        a.Wait,
        a.Terminate,
        a.Answer,
    }
    assert len(a.ACTION_NAMES) == 14


@pytest.mark.parametrize(
    ("arguments", "kind"), VALID, ids=lambda v: v["action"] if isinstance(v, dict) else ""
)
def test_valid_arguments_parse(arguments: dict, kind: type) -> None:
    action = a.parse_action(arguments)
    assert isinstance(action, kind)
    assert a.parse_action(action.arguments()) == action


INVALID = [
    ({"action": "type", "text": 5}, "text"),
    ({"action": "wait", "time": -1}, "time"),
    ({"action": "wait", "time": 3600}, "time"),
    ({"action": "scroll"}, "'pixels' is missing"),
    ({"action": "scroll", "pixels": "up"}, "pixels"),
    ({"action": "scroll", "pixels": -1000000000000}, "pixels"),
    ({"action": "hscroll", "pixels": 10001}, "pixels"),
    ({"action": "mouse_move"}, "'coordinate' is missing"),
    ({"action": "left_click_drag", "coordinate": None}, "coordinate"),
    ({"action": "key", "keys": []}, "empty"),
    ({"action": "key", "keys": 5}, "keys"),
    ({"action": "answer"}, "'text' is missing"),
    ({"action": None}, "unknown action"),
    ({}, "unknown action"),
]


@pytest.mark.parametrize(("arguments", "named"), INVALID, ids=str)
def test_invalid_arguments_rejected(arguments: dict, named: str) -> None:
    with pytest.raises(InvalidReplyError, match=named):
        a.parse_action(arguments)


def test_key_names_are_normalised() -> None:
    action = a.parse_action({"action": "key", "keys": "Ctrl+Return"})
    assert isinstance(action, a.Key)
    assert action.keys == ["ctrl", "enter"]


def test_schema_is_a_discriminated_union() -> None:
    schema = a.action_schema()
    assert schema["discriminator"]["propertyName"] == "action"
    assert len(schema["oneOf"]) == 14
    coordinate = schema["$defs"]["LeftClick"]["properties"]["coordinate"]["anyOf"][0]
    assert coordinate["minItems"] == coordinate["maxItems"] == 2
    assert coordinate["items"]["maximum"] == 1000


def test_tool_call_schema_is_valid_json() -> None:
    schema = a.tool_call_schema()
    assert schema["properties"]["name"]["enum"] == ["computer_use"]
    assert json.loads(json.dumps(schema)) == schema


def test_union_adapter_round_trips() -> None:
    adapter: TypeAdapter[a.Action] = TypeAdapter(a.Action)
    for arguments, _ in VALID:
        action = adapter.validate_python(arguments)
        assert adapter.validate_json(adapter.dump_json(action)) == action


DESCRIPTIONS = [
    ({"action": "left_click", "coordinate": [500, 250]}, "Click at [500, 250]"),
    ({"action": "double_click", "coordinate": [1, 2]}, "Double-click at [1, 2]"),
    ({"action": "right_click"}, "Right-click at the pointer"),
    ({"action": "type", "text": "hello\n"}, "Type “hello” and press Enter"),
    ({"action": "key", "keys": "ctrl+c"}, "Press ctrl+c"),
    ({"action": "scroll", "pixels": -300}, "Scroll down 300 px"),
    ({"action": "hscroll", "pixels": 50}, "Scroll left 50 px"),
    ({"action": "terminate", "status": "success"}, "Finish the task (success)"),
]


@pytest.mark.parametrize(("arguments", "expected"), DESCRIPTIONS, ids=str)
def test_describe_action(arguments: dict, expected: str) -> None:
    assert a.describe_action(a.parse_action(arguments)) == expected
