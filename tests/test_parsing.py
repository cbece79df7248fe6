"""Table tests for the reply parser: the boundary every model reply crosses."""

from __future__ import annotations

import json
import sys

import pytest

from agent.actions import Key, LeftClick, Type, Wait
from agent.parsing import (
    MAX_CHECKED_AFTER_ACTION,
    MAX_JSON_DEPTH,
    ParsedReply,
    ReplyStatus,
    parse_reply,
)

CLICK = '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 250]}}'
WAIT = '{"name": "computer_use", "arguments": {"action": "wait", "time": 2}}'


def call(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


OK_CASES = [
    ("plain tool call", call(CLICK), LeftClick, ""),
    (
        "both think tags",
        f"<think>look at the button</think>\n{call(CLICK)}",
        LeftClick,
        "look at the button",
    ),
    (
        "only closing think tag",
        f"look at the button\n</think>\n\n{call(CLICK)}",
        LeftClick,
        "look at the button",
    ),
    ("action line before call", f"Action: click Submit\n{call(CLICK)}", LeftClick, ""),
    ("text after json in block", call(CLICK + " trailing ]} text"), LeftClick, ""),
    ("brackets after the call", call(CLICK) + " ]]} {{", LeftClick, ""),
    ("no closing tool_call tag", f"<tool_call>{CLICK}", LeftClick, ""),
    ("fenced json", f"```json\n{CLICK}\n```", LeftClick, ""),
    ("fenced json inside tags", call(f"```json\n{CLICK}\n```"), LeftClick, ""),
    ("untagged json", f"I will click. {CLICK}", LeftClick, ""),
    ("bare arguments", '{"action": "type", "text": "hi"}', Type, ""),
    (
        "arguments as json string",
        call('{"name": "computer_use", "arguments": "{\\"action\\": \\"wait\\", \\"time\\": 1}"}'),
        Wait,
        "",
    ),
    (
        "key chord string",
        call('{"name": "computer_use", "arguments": {"action": "key", "keys": "ctrl+shift+t"}}'),
        Key,
        "",
    ),
    ("first of two good blocks", call(CLICK) + call(WAIT), LeftClick, ""),
    (
        "good block after bad one",
        call('{"name": "computer_use", "arguments": {"action": "fly"}}') + call(WAIT),
        Wait,
        "",
    ),
    (
        "good block after broken json",
        call('{"name": "computer_use", "arguments": {"action": ') + call(WAIT),
        Wait,
        "",
    ),
    (
        "unicode text",
        call('{"name": "computer_use", "arguments": {"action": "type", "text": "café Ω <b>"}}'),
        Type,
        "",
    ),
    (
        "think call then real call",
        f"<think>maybe {call(WAIT)}</think>{call(CLICK)}",
        LeftClick,
        f"maybe {call(WAIT)}",
    ),
]


@pytest.mark.parametrize(
    ("label", "reply", "kind", "thinking"), OK_CASES, ids=[c[0] for c in OK_CASES]
)
def test_parse_ok(label: str, reply: str, kind: type, thinking: str) -> None:
    parsed = parse_reply(reply)
    assert parsed.status is ReplyStatus.OK, parsed.error
    assert isinstance(parsed.action, kind)
    assert parsed.thinking == thinking


INVALID_CASES = [
    ("null in coordinate", [500, None], "null"),
    ("string coordinate", ["500", 250], '"500"'),
    ("boolean coordinate", [True, 250], "true"),
    ("three numbers", [1, 2, 3], "[1, 2, 3]"),
    ("one number", [1], "[1]"),
    ("out of range", [1001, 5], "0 to 1000"),
    ("negative", [-1, 5], "0 to 1000"),
    ("coordinate as string", "500,250", '"500,250"'),
    ("coordinate as object", {"x": 1, "y": 2}, "coordinate"),
]


@pytest.mark.parametrize(
    ("label", "coordinate", "named"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_parse_invalid_coordinate(label: str, coordinate: object, named: str) -> None:
    import json

    body = json.dumps(
        {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": coordinate}}
    )
    parsed = parse_reply(call(body))
    assert parsed.status is ReplyStatus.INVALID
    assert parsed.action is None
    assert named in parsed.error
    assert "0 to 1000" in parsed.error


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_parse_non_finite_coordinate(literal: str) -> None:
    body = (
        '{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [%s, 5]}}'
        % literal
    )
    parsed = parse_reply(call(body))
    assert parsed.status is ReplyStatus.INVALID
    assert "not finite" in parsed.error


REJECTED_CASES = [
    ("unknown tool", '{"name": "browser", "arguments": {"action": "left_click"}}', "unknown tool"),
    (
        "unknown action",
        '{"name": "computer_use", "arguments": {"action": "fly"}}',
        "unknown action",
    ),
    (
        "missing argument",
        '{"name": "computer_use", "arguments": {"action": "type"}}',
        "'text' is missing",
    ),
    (
        "extra argument",
        '{"name": "computer_use", "arguments": {"action": "wait", "time": 1, "x": 2}}',
        "'x' is not allowed",
    ),
    (
        "unknown key",
        '{"name": "computer_use", "arguments": {"action": "key", "keys": ["ctrl", "foo"]}}',
        "'foo'",
    ),
    (
        "bad status",
        '{"name": "computer_use", "arguments": {"action": "terminate", "status": "ok"}}',
        "status",
    ),
    ("arguments not object", '{"name": "computer_use", "arguments": [1, 2]}', "not a JSON object"),
    ("no arguments", '{"name": "computer_use"}', "no 'arguments'"),
    ("not json", "click the button please", "no JSON"),
    ("python call", 'pyautogui.click(10, 20); {"name": "computer_use"', "not valid JSON"),
]


@pytest.mark.parametrize(
    ("label", "body", "named"), REJECTED_CASES, ids=[c[0] for c in REJECTED_CASES]
)
def test_parse_rejects_block(label: str, body: str, named: str) -> None:
    parsed = parse_reply(call(body))
    assert parsed.status in (ReplyStatus.INVALID, ReplyStatus.TRUNCATED)
    assert parsed.action is None
    assert named in parsed.error or any(named in block.reason for block in parsed.dropped)


def test_only_closing_tag_matches_both_tags() -> None:
    both = parse_reply(f"<think>Find the field.</think>\n{call(CLICK)}", thinking_opened=True)
    closing_only = parse_reply(f"Find the field.</think>\n{call(CLICK)}", thinking_opened=True)
    assert both.action == closing_only.action
    assert both.thinking == closing_only.thinking == "Find the field."


TRUNCATED_CASES = [
    ("opened prompt, no close", "I should click the", True),
    ("open tag, no close", "<think>I should click the", False),
    ("call inside open reasoning", f"<think>plan: {call(CLICK)} and then", False),
    ("call inside opened prompt", f"plan {call(CLICK)}", True),
]


@pytest.mark.parametrize(
    ("label", "reply", "opened"), TRUNCATED_CASES, ids=[c[0] for c in TRUNCATED_CASES]
)
def test_cut_off_reasoning_runs_nothing(label: str, reply: str, opened: bool) -> None:
    parsed = parse_reply(reply, thinking_opened=opened)
    assert parsed.status is ReplyStatus.TRUNCATED
    assert parsed.action is None


def test_call_inside_reasoning_is_dropped() -> None:
    parsed = parse_reply(f"<think>{call(CLICK)}</think>No action needed.")
    assert parsed.status is ReplyStatus.NO_ACTION
    assert parsed.action is None
    assert parsed.dropped[0].reason == "a tool call inside the reasoning is not an action"


def test_cut_off_tool_call_is_truncated() -> None:
    parsed = parse_reply(
        '</think><tool_call>{"name": "computer_use", "arguments": {"action": "left_cl'
    )
    assert parsed.status is ReplyStatus.TRUNCATED
    assert parsed.action is None


def test_extra_blocks_reported_as_dropped() -> None:
    parsed = parse_reply(call(CLICK) + call(WAIT) + call(WAIT))
    assert isinstance(parsed.action, LeftClick)
    assert len(parsed.dropped) == 2
    assert all("one action per step" in block.reason for block in parsed.dropped)


def test_bad_block_reported_beside_good_one() -> None:
    parsed = parse_reply(
        call('{"name": "computer_use", "arguments": {"action": "fly"}}') + call(CLICK)
    )
    assert isinstance(parsed.action, LeftClick)
    assert "unknown action" in parsed.dropped[0].reason


def test_plain_text_reply_has_no_action() -> None:
    parsed = parse_reply("The task is already done.")
    assert parsed.status is ReplyStatus.NO_ACTION
    assert "<tool_call>" in parsed.error


def test_reply_is_never_evaluated(tmp_path) -> None:
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    body = '{"name": "computer_use", "arguments": {"action": "type", "text": %s}}' % __import__(
        "json"
    ).dumps(payload)
    parsed = parse_reply(call(body) + call(payload))
    assert isinstance(parsed.action, Type)
    assert parsed.action.text == payload
    assert not marker.exists()


@pytest.mark.parametrize(
    "reply",
    [
        f"[{CLICK}, {WAIT}]",
        call(f"[{CLICK}, {WAIT}]"),
        f"```json\n[{CLICK}, {WAIT}]\n```",
        f"Here are my calls: [{CLICK}, {WAIT}] done",
    ],
    ids=["bare array", "array in tags", "fenced array", "array in text"],
)
def test_array_of_calls_runs_first(reply: str) -> None:
    parsed = parse_reply(reply)
    assert isinstance(parsed.action, LeftClick)
    assert len(parsed.dropped) == 1
    assert "one action per step" in parsed.dropped[0].reason


def test_array_with_bad_call_first() -> None:
    parsed = parse_reply(
        call(f'[{{"name": "computer_use", "arguments": {{"action": "fly"}}}}, {WAIT}]')
    )
    assert isinstance(parsed.action, Wait)
    assert "unknown action" in parsed.dropped[0].reason


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


DEEP = 1000
DEEP_CASES = [
    ("arrays in tags", call(nested_arrays(DEEP))),
    ("objects in tags", call(nested_objects(DEEP))),
    ("objects without closing tag", "<tool_call>" + '{"a": ' * DEEP),
    ("array of deep calls", call("[" + nested_arrays(DEEP) + "]")),
    ("deep arguments", call('{"name": "computer_use", "arguments": %s}' % nested_arrays(DEEP))),
    ("fenced arrays", f"```json\n{nested_arrays(DEEP)}\n```"),
    ("untagged objects", 'I will click. {"name": ' + nested_objects(DEEP) + "}"),
    ("untagged unclosed objects", 'I will click. {"action": ' + '{"a": ' * DEEP),
    ("just over the limit", call(nested_objects(MAX_JSON_DEPTH + 1))),
    (
        "arguments string",
        call(json.dumps({"name": "computer_use", "arguments": nested_objects(DEEP)})),
    ),
]


@pytest.mark.parametrize(("label", "reply"), DEEP_CASES, ids=[c[0] for c in DEEP_CASES])
def test_deep_nesting_is_invalid(label: str, reply: str) -> None:
    parsed = parse_reply(reply)
    assert parsed.status is ReplyStatus.INVALID
    assert parsed.action is None
    assert "nested too deeply" in parsed.error


def test_nesting_at_limit_is_decoded() -> None:
    # The call and its arguments are 2 levels, so the text value brings the total to the limit.
    text = nested_arrays(MAX_JSON_DEPTH - 2)
    body = '{"name": "computer_use", "arguments": {"action": "type", "text": %s}}' % text
    parsed = parse_reply(call(body))
    assert parsed.status is ReplyStatus.INVALID
    assert "invalid type action" in parsed.error


def test_deep_nesting_at_deep_call_stack() -> None:
    # From a deep call stack the decoder hits Python's recursion limit before its depth check.
    def parse_at_depth(frames: int) -> object:
        return parse_at_depth(frames - 1) if frames else parse_reply(call(nested_objects(200)))

    parsed = parse_at_depth(sys.getrecursionlimit() - 60)
    assert isinstance(parsed, ParsedReply)
    assert parsed.status is ReplyStatus.INVALID
    assert "nested too deeply" in parsed.error


def test_good_call_after_deep_one() -> None:
    parsed = parse_reply(call(nested_arrays(DEEP)) + call(CLICK))
    assert isinstance(parsed.action, LeftClick)
    assert "nested too deeply" in parsed.dropped[0].reason


@pytest.mark.parametrize(
    "reply",
    [
        f"<tool_call><tool_call>{CLICK}</tool_call></tool_call>",
        f"<tool_call>\n<tool_call>\n{CLICK}\n</tool_call>\n</tool_call>",
    ],
    ids=["nested", "nested on new lines"],
)
def test_nested_tool_call_reason(reply: str) -> None:
    parsed = parse_reply(reply)
    assert isinstance(parsed.action, LeftClick)
    assert len(parsed.dropped) == 1
    assert "opens inside another tool call" in parsed.dropped[0].reason


def test_nested_tool_call_without_action() -> None:
    parsed = parse_reply("<tool_call><tool_call>click it</tool_call></tool_call>")
    assert parsed.status is ReplyStatus.INVALID
    assert "opens inside another tool call" in parsed.error


class CountingDecoder:
    """A JSON decoder that counts its `raw_decode` calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.decoder = json.JSONDecoder()

    def raw_decode(self, text: str, start: int = 0) -> tuple[object, int]:
        self.calls += 1
        return self.decoder.raw_decode(text, start)


@pytest.fixture
def decoder(monkeypatch: pytest.MonkeyPatch) -> CountingDecoder:
    counting = CountingDecoder()
    monkeypatch.setattr("agent.parsing._DECODER", counting)
    return counting


MANY = 100_000


@pytest.mark.parametrize(
    ("label", "reply"),
    [
        ("closed tags", call(CLICK) * MANY),
        ("unclosed tags", f"<tool_call>{CLICK}" * MANY),
        ("array in tags", call("[" + ", ".join([CLICK] * MANY) + "]")),
    ],
    ids=["closed tags", "unclosed tags", "array in tags"],
)
def test_many_calls_bounded_work(label: str, reply: str, decoder: CountingDecoder) -> None:
    # A quadratic scan, one that copies or searches the rest of the reply for each block,
    # takes a minute or more at this size instead of under a second.
    parsed = parse_reply(reply)
    assert isinstance(parsed.action, LeftClick)
    assert len(parsed.dropped) == MAX_CHECKED_AFTER_ACTION + 1
    checked = parsed.dropped[:-1]
    assert all("one action per step" in block.reason for block in checked)
    unchecked = MANY - 1 - MAX_CHECKED_AFTER_ACTION
    assert parsed.dropped[-1].reason.startswith(f"{unchecked} more tool calls were not checked")
    # The array is decoded once as a whole, then each checked call once more.
    assert decoder.calls <= MAX_CHECKED_AFTER_ACTION + 2


def test_bad_calls_decoded_once(decoder: CountingDecoder) -> None:
    count = 10_000
    bad = call('{"name": "computer_use", "arguments": {"action": "fly"}}')
    parsed = parse_reply(bad * count + call(CLICK))
    assert isinstance(parsed.action, LeftClick)
    assert len(parsed.dropped) == count
    assert all("unknown action" in block.reason for block in parsed.dropped)
    assert decoder.calls == count + 1


def test_bad_call_after_action_keeps_reason() -> None:
    bad = call('{"name": "computer_use", "arguments": {"action": "fly"}}')
    parsed = parse_reply(call(CLICK) + bad + call(WAIT))
    assert isinstance(parsed.action, LeftClick)
    assert "unknown action" in parsed.dropped[0].reason
    assert "one action per step" in parsed.dropped[1].reason


def test_untagged_call_after_deep_data() -> None:
    data = '{"data": %s}' % nested_arrays(MAX_JSON_DEPTH + 10)
    parsed = parse_reply(f"The page holds {data}. I will click. {CLICK}")
    assert isinstance(parsed.action, LeftClick)
