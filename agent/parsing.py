"""Turn one raw model reply into reasoning plus at most one validated action.

The reply format is Qwen3-VL's: optional reasoning closed by `</think>` (the
Thinking model's prompt already opened `<think>`, so the reply often holds only
the closing tag), optional free text, then `<tool_call>{json}</tool_call>` blocks
each holding `{"name": "computer_use", "arguments": {...}}`.

Rules:

- Reasoning ends at the first `</think>`. A tool call inside it is never an action.
- When the prompt opened `<think>` (or the reply opens it) and no `</think>` follows,
  the reply was cut off inside the reasoning: status `truncated`, nothing runs.
- Each tool-call block is decoded on its own, so one bad block cannot lose a good one.
  The first valid block runs; the rest are reported in `dropped`.
- Blocks are decoded until one is valid. After it, only `MAX_CHECKED_AFTER_ACTION`
  more are decoded, and one last `dropped` entry counts the others, so a reply with
  many calls costs little more than one with a few.
- JSON nested more than `MAX_JSON_DEPTH` levels is invalid, so deep input cannot
  exhaust Python's recursion limit in the decoder or in the code that reads the value.
- JSON is decoded from the start of a value to its end (`json.JSONDecoder.raw_decode`),
  so text after it does not matter. Fenced and untagged JSON are accepted when the
  reply holds no `<tool_call>` tag.
- Nothing in a reply is evaluated as code: `json` is the only decoder.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, replace
from typing import Any

from agent.actions import TOOL_NAME, Action, parse_action
from agent.errors import InvalidReplyError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

# A valid call nests 4 levels at most: array of calls > call > arguments > coordinate.
MAX_JSON_DEPTH = 32
# Blocks after the action that are still decoded, so each gets its own reason in `dropped`.
MAX_CHECKED_AFTER_ACTION = 20
_ONE_ACTION_REASON = "only the first action runs; one action per step"
_NESTED_CALL_REASON = (
    f"a {CALL_OPEN} tag opens inside another tool call; "
    f"close each call with {CALL_CLOSE} before the next {CALL_OPEN}"
)

_FENCE = re.compile(r"```(?:json|JSON|tool_call)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_DECODER = json.JSONDecoder()


class ReplyStatus(enum.StrEnum):
    OK = "ok"
    NO_ACTION = "no_action"
    TRUNCATED = "truncated"
    INVALID = "invalid"


@dataclass(frozen=True)
class DroppedBlock:
    """A tool-call block that did not run, with the reason."""

    text: str
    reason: str


@dataclass(frozen=True)
class ParsedReply:
    """The result of parsing one reply. `action` is set exactly when `status` is OK."""

    status: ReplyStatus
    thinking: str = ""
    # The visible text after the reasoning, tool calls included.
    content: str = ""
    action: Action | None = None
    dropped: tuple[DroppedBlock, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ReplyStatus.OK


@dataclass
class _Candidate:
    text: str
    complete: bool = True
    # Why the block cannot run, when that is known before decoding it.
    problem: str = ""


class _NestingError(ValueError):
    """JSON nested more than `MAX_JSON_DEPTH` levels, or too deep for the decoder's recursion."""


def parse_reply(text: str, *, thinking_opened: bool = False) -> ParsedReply:
    """Parse one raw reply.

    `thinking_opened` tells the parser that the prompt ended with `<think>`, as the
    Thinking model's chat template does, so a reply with no `</think>` is truncated.
    """
    thinking, content, closed = split_reasoning(text, thinking_opened=thinking_opened)
    dropped = [
        DroppedBlock(block.text, "a tool call inside the reasoning is not an action")
        for block in _tagged_blocks(thinking)
    ]
    if not closed:
        error = (
            "the reply was cut off inside the reasoning before any action; finish thinking sooner"
        )
        return ParsedReply(ReplyStatus.TRUNCATED, thinking, "", None, tuple(dropped), error)

    action: Action | None = None
    errors: list[str] = []
    truncated = False
    blocks = _content_blocks(content)
    checked_after_action = 0
    for index, block in enumerate(blocks):
        if action is not None:
            if checked_after_action == MAX_CHECKED_AFTER_ACTION:
                dropped.append(_unchecked_summary(len(blocks) - index))
                break
            checked_after_action += 1
        try:
            parsed = _parse_block(block)
        except InvalidReplyError as exc:
            dropped.append(DroppedBlock(block.text, str(exc)))
            if block.complete:
                errors.append(str(exc))
            else:
                truncated = True
            continue
        if action is None:
            action = parsed
        else:
            dropped.append(DroppedBlock(block.text, _ONE_ACTION_REASON))

    if action is not None:
        return ParsedReply(ReplyStatus.OK, thinking, content, action, tuple(dropped))
    if errors:
        return ParsedReply(ReplyStatus.INVALID, thinking, content, None, tuple(dropped), errors[0])
    if truncated:
        error = "the tool call was cut off before its JSON ended; write the whole call"
        return ParsedReply(ReplyStatus.TRUNCATED, thinking, content, None, tuple(dropped), error)
    error = (
        f'the reply has no action; answer with <tool_call>{{"name": "{TOOL_NAME}", '
        '"arguments": {"action": ...}}</tool_call>'
    )
    return ParsedReply(ReplyStatus.NO_ACTION, thinking, content, None, tuple(dropped), error)


def _unchecked_summary(count: int) -> DroppedBlock:
    calls = "1 more tool call was" if count == 1 else f"{count} more tool calls were"
    reason = (
        f"{calls} not checked: only the first action runs, "
        f"and only {MAX_CHECKED_AFTER_ACTION} calls after it are checked"
    )
    return DroppedBlock("", reason)


def split_reasoning(text: str, *, thinking_opened: bool = False) -> tuple[str, str, bool]:
    """Split a reply into (reasoning, content, reasoning_closed)."""
    head, sep, tail = text.partition(THINK_CLOSE)
    if sep:
        return _strip_open(head).strip(), tail.strip(), True
    stripped = text.lstrip()
    if thinking_opened or stripped.startswith(THINK_OPEN):
        return _strip_open(text).strip(), "", False
    return "", text.strip(), True


def _strip_open(text: str) -> str:
    before, sep, after = text.partition(THINK_OPEN)
    return after if sep and not before.strip() else text


def _tagged_blocks(text: str) -> list[_Candidate]:
    # Each search starts at an offset into `text` and stops at the next opening tag, so
    # the scan stays linear in the length of the reply however many blocks it contains.
    blocks: list[_Candidate] = []
    open_at = text.find(CALL_OPEN)
    while open_at != -1:
        body_start = open_at + len(CALL_OPEN)
        next_open = text.find(CALL_OPEN, body_start)
        body_end = len(text) if next_open == -1 else next_open
        close_at = text.find(CALL_CLOSE, body_start, body_end)
        if close_at != -1:
            blocks.append(_Candidate(text[body_start:close_at]))
        elif next_open != -1:
            # An opening tag with no closing tag before the next block: judge it alone.
            body = text[body_start:next_open]
            problem = "" if body.strip() else _NESTED_CALL_REASON
            blocks.append(_Candidate(body, problem=problem))
        else:
            body = text[body_start:]
            blocks.append(_Candidate(body, complete=_decodes_fully(body)))
        open_at = next_open
    return blocks


def _content_blocks(content: str) -> list[_Candidate]:
    if CALL_OPEN in content:
        blocks = _tagged_blocks(content)
    else:
        blocks = [_Candidate(match.group(1)) for match in _FENCE.finditer(content)]
        if not blocks:
            untagged = _untagged_json(content)
            blocks = [untagged] if untagged else []
    return [item for block in blocks for item in _split_array(block)]


def _split_array(block: _Candidate) -> list[_Candidate]:
    """Split a block holding a JSON array of calls into one candidate per call."""
    fenced = _FENCE.search(block.text)
    body = (fenced.group(1) if fenced else block.text).strip()
    if not body.startswith("["):
        return [block]
    try:
        value, _ = _decode_bounded(body)
    except json.JSONDecodeError:
        return [block]
    except _NestingError:
        return [replace(block, problem=_nesting_reason(block.text))]
    if not isinstance(value, list) or not value:
        return [block]
    return [_Candidate(json.dumps(item)) for item in value]


def _untagged_json(content: str) -> _Candidate | None:
    """Find the first JSON object in free text that looks like a tool call or action."""
    for match in re.finditer(r"\{", content):
        try:
            value, end = _raw_decode(content, match.start())
        except json.JSONDecodeError:
            continue
        except _NestingError:
            # Stop here, because every brace inside would be decoded again to the same depth.
            # NOTE: a tool call after JSON this deep in untagged text is therefore not found.
            return _Candidate(content[match.start() :])
        if isinstance(value, dict) and ("name" in value or "action" in value):
            start = match.start()
            # A call inside a JSON array: take the whole array, so every call in it is judged.
            before = content[:start].rstrip()
            if before.endswith("["):
                array_start = len(before) - 1
                try:
                    _, array_end = _raw_decode(content, array_start)
                except (json.JSONDecodeError, _NestingError):
                    return _Candidate(content[start:end])
                return _Candidate(content[array_start:array_end])
            return _Candidate(content[start:end])
    brace = content.find("{")
    if brace != -1 and re.search(r'"(name|action)"\s*:', content[brace:]):
        return _Candidate(content[brace:], complete=False)
    return None


def _decodes_fully(text: str) -> bool:
    start = text.find("{")
    if start == -1:
        return True
    try:
        _raw_decode(text, start)
    except json.JSONDecodeError:
        return False
    except _NestingError:
        # The decoder gave up on depth before reaching the end, so the block was not cut off.
        return True
    return True


def _parse_block(block: _Candidate) -> Action:
    if block.problem:
        raise InvalidReplyError(block.problem)
    value = _decode_json(block.text)
    if not isinstance(value, dict):
        raise InvalidReplyError(f"the tool call {_clip(block.text)} is not a JSON object")
    if "name" not in value and "action" in value:
        return parse_action(value)

    name = value.get("name")
    if name != TOOL_NAME:
        raise InvalidReplyError(f"unknown tool {json.dumps(name)}; the only tool is {TOOL_NAME!r}")
    arguments = value.get("arguments", value.get("parameters"))
    if isinstance(arguments, str):
        # Some servers and fine-tunes send the arguments as a JSON string.
        arguments = _decode_json(arguments)
    if arguments is None:
        raise InvalidReplyError(f"the {TOOL_NAME} call has no 'arguments' object")
    return parse_action(arguments)


def _decode_json(text: str) -> Any:
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start = body.find("{")
    if start == -1:
        raise InvalidReplyError(f"the tool call {_clip(text)} contains no JSON object")
    try:
        value, _ = _decode_bounded(body, start)
    except json.JSONDecodeError as exc:
        raise InvalidReplyError(
            f"the tool call {_clip(text)} is not valid JSON ({exc.msg} at character {exc.pos - start})"
        ) from exc
    except _NestingError as exc:
        raise InvalidReplyError(_nesting_reason(text)) from exc
    return value


def _raw_decode(text: str, start: int = 0) -> tuple[Any, int]:
    """Decode one JSON value at `start`, as `JSONDecoder.raw_decode` does.

    Raises `_NestingError` when the decoder hits Python's recursion limit (1,000 frames
    by default, so about 1,000 levels from a shallow call stack and fewer from a deep one).
    """
    try:
        return _DECODER.raw_decode(text, start)
    except RecursionError as exc:
        raise _NestingError() from exc


def _decode_bounded(text: str, start: int = 0) -> tuple[Any, int]:
    """Decode one JSON value at `start`, raising `_NestingError` past `MAX_JSON_DEPTH` levels."""
    value, end = _raw_decode(text, start)
    if _nesting_depth(value, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH:
        raise _NestingError()
    return value, end


def _nesting_depth(value: Any, limit: int) -> int:
    """Count the levels of lists and dicts in `value`, stopping once the count reaches `limit`.

    The walk goes one level at a time without recursion, so any depth is safe to measure.
    """
    depth = 0
    level = [value]
    while depth < limit:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return depth


def _nesting_reason(text: str) -> str:
    return (
        f"the tool call {_clip(text)} is nested too deeply: JSON arrays and objects may nest "
        f"{MAX_JSON_DEPTH} levels at most; write one call as "
        f'{{"name": "{TOOL_NAME}", "arguments": {{"action": ...}}}}'
    )


def _clip(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return json.dumps(flat if len(flat) <= limit else flat[: limit - 1] + "…")
