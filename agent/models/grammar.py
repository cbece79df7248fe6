"""A hand-written GBNF grammar for one `computer_use` tool call.

llama.cpp's JSON-schema converter drops integer `minimum` and `maximum`, so a schema
cannot keep coordinates on the 0..1000 grid; this grammar spells the ranges out. It
follows the argument rules of `agent.actions`:

- coordinates are two integers from 0 to 1000, the form Qwen3-VL writes;
- `key` takes one to five canonical key names (`agent.keys.NAMED_KEYS`) or single
  characters, so every constrained key action passes the key normaliser;
- `wait` takes 0 to 60 seconds and `scroll` -10000 to 10000 pixels, the action's limits;
- strings hold at most `max_string_chars` characters, so a runaway string ends.

For a Thinking model the grammar first allows free reasoning up to `</think>`
(the prompt has already opened `<think>`), then forces the tool call.
"""

from __future__ import annotations

import json

from agent.actions import ACTION_NAMES, TOOL_NAME
from agent.keys import NAMED_KEYS

THINK_CLOSE = "</think>"
MAX_CHORD_KEYS = 5

_CLICKS = ("left_click", "right_click", "middle_click", "double_click", "triple_click")

# Arguments after "action", per action, as grammar fragments.
_ACTION_ARGUMENTS: dict[str, str] = {
    "key": 'sep "\\"keys\\":" ws keys',
    "type": 'sep "\\"text\\":" ws string',
    "mouse_move": "coordinate-arg",
    **dict.fromkeys(_CLICKS, "coordinate-arg?"),
    "left_click_drag": "coordinate-arg",
    "scroll": 'sep "\\"pixels\\":" ws pixels coordinate-arg?',
    "hscroll": 'sep "\\"pixels\\":" ws pixels coordinate-arg?',
    "wait": 'sep "\\"time\\":" ws seconds',
    "terminate": 'sep "\\"status\\":" ws ("\\"success\\"" | "\\"failure\\"")',
    "answer": 'sep "\\"text\\":" ws string',
}

_COMMON_RULES = r"""
ws ::= " "?
sep ::= "," ws
coordinate-arg ::= sep "\"coordinate\":" ws "[" ws grid-number sep grid-number ws "]"
grid-number ::= "1000" | [1-9] [0-9]? [0-9]? | "0"
pixels ::= "-"? ("10000" | "0" | [1-9] [0-9]? [0-9]? [0-9]?)
seconds ::= "60" | ([0-9] | [1-5] [0-9]) ("." [0-9] [0-9]?)?
char ::= [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])
key-char ::= [^"\\\x00-\x1f] | "\\\\" | "\\\""
"""


def tool_call_grammar(
    *, thinking: bool, max_prelude_chars: int = 256, max_string_chars: int = 500
) -> str:
    """Return the GBNF grammar (root rule `root`) for an optional text prelude and one tool call.

    `max_prelude_chars` bounds the free text before `<tool_call>` (after `</think>` for a
    Thinking model); it may not contain `<`. With 0 only up to two newlines are allowed.
    """
    if max_prelude_chars < 0 or max_string_chars < 0:
        raise ValueError(
            f"max_prelude_chars {max_prelude_chars} and max_string_chars {max_string_chars} "
            "must not be negative"
        )
    root = f"reasoning {_quote(THINK_CLOSE)} prelude call" if thinking else "prelude call"
    rules = [
        f"root ::= {root}",
        'call ::= "<tool_call>\\n" tool-object "\\n</tool_call>"',
        f'tool-object ::= "{{" ws "\\"name\\":" ws {_json_literal(TOOL_NAME)} '
        'sep "\\"arguments\\":" ws arguments ws "}"',
        "arguments ::= " + " | ".join(f"{_rule_name(name)}-args" for name in ACTION_NAMES),
        *(_action_rule(name) for name in ACTION_NAMES),
        _prelude_rule(max_prelude_chars),
        f'string ::= "\\"" {_bounded("char", max_string_chars)} "\\""',
        _keys_rule(),
        _COMMON_RULES.strip(),
    ]
    if thinking:
        rules.append(f"reasoning ::= ({_excluding(THINK_CLOSE)})*")
    return "\n".join(rules) + "\n"


def _action_rule(name: str) -> str:
    action = f'"{{" ws "\\"action\\":" ws {_json_literal(name)}'
    return f'{_rule_name(name)}-args ::= {action} {_ACTION_ARGUMENTS[name]} ws "}}"'


def _prelude_rule(max_chars: int) -> str:
    if max_chars == 0:
        return 'prelude ::= "\\n"? "\\n"?'
    return f"prelude ::= {_bounded('[^<]', max_chars)}"


def _keys_rule() -> str:
    names = " | ".join(_json_literal(name) for name in sorted(NAMED_KEYS))
    more = f"(sep key-name){{0,{MAX_CHORD_KEYS - 1}}}"
    return f'keys ::= "[" ws key-name {more} ws "]"\nkey-name ::= {names} | "\\"" key-char "\\""'


def _excluding(word: str) -> str:
    """Return a grammar item that matches one piece of text that cannot start `word`.

    Repeated, it matches any text that does not contain `word`. After a partial prefix of
    `word` comes a character that is neither the next one of `word` nor `word[0]`. So
    reasoning cannot contain `<<`, and it cannot end in `</thi` right before `</think>`.
    """
    first = _class_char(word[0])
    item = ""
    for index in range(len(word) - 1, 0, -1):
        other = f"[^{_class_char(word[index])}{first}]"
        item = other if not item else f"{other} | {_quote(word[index])} ({item})"
    return f"[^{first}] | {_quote(word[0])} ({item})"


def _bounded(item: str, max_count: int) -> str:
    return f"{item}{{0,{max_count}}}" if max_count else '""'


def _class_char(char: str) -> str:
    return "\\" + char if char in "]^-\\" else char


def _quote(text: str) -> str:
    """Return a GBNF literal that matches `text` exactly."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _json_literal(value: str) -> str:
    """Return a GBNF literal that matches `value` as a JSON string, quotes included."""
    return _quote(json.dumps(value))


def _rule_name(action: str) -> str:
    return action.replace("_", "-")
