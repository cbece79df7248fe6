"""Parse the planner's reply: reasoning, then the next step or the end of the task.

The planner (the Thinking model) ends its reply with one of

    Next step: <one instruction that names the target>
    Finished: success        (optionally followed by "Answer: <text>")
    Finished: failure

Markdown emphasis and list markers around the labels are accepted. When several
labels appear, the last one counts, because the reply is asked to end with it. A
planner that writes a `terminate` or `answer` tool call instead is understood as
finished; any other tool call is invalid, since the grounder chooses the action.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from agent.actions import Action, Answer, Terminate
from agent.parsing import parse_reply, split_reasoning

_LABEL = r"^[ \t>*#_-]*(?:\*\*|__)?\s*{name}\s*(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?"
_NEXT = re.compile(
    _LABEL.format(name=r"next\s+step") + r"(?P<text>.*)$", re.IGNORECASE | re.MULTILINE
)
_FINISHED = re.compile(
    _LABEL.format(name="finished") + r"\s*(?P<text>success|failure)\b", re.IGNORECASE | re.MULTILINE
)
_ANSWER = re.compile(
    _LABEL.format(name="answer") + r"(?P<text>.*)", re.IGNORECASE | re.MULTILINE | re.DOTALL
)

FORMAT_HINT = (
    'end the reply with "Next step: <one instruction>", "Finished: success" or "Finished: failure"'
)


class PlanStatus(enum.StrEnum):
    NEXT = "next"
    FINISHED = "finished"
    TRUNCATED = "truncated"
    INVALID = "invalid"


@dataclass(frozen=True)
class Plan:
    """The planner's decision.

    `instruction` is set for NEXT, and `action` (terminate or answer) for FINISHED.
    """

    status: PlanStatus
    reasoning: str = ""
    content: str = ""
    instruction: str = ""
    action: Action | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (PlanStatus.NEXT, PlanStatus.FINISHED)


def parse_plan(text: str, *, thinking_opened: bool = False) -> Plan:
    """Parse one planner reply. `thinking_opened` means the prompt ended with `<think>`."""
    reasoning, content, closed = split_reasoning(text, thinking_opened=thinking_opened)
    if not closed:
        error = "the reply was cut off inside the reasoning; finish thinking sooner"
        return Plan(PlanStatus.TRUNCATED, reasoning, "", error=error)

    next_match = _last(_NEXT, content)
    finished_match = _last(_FINISHED, content)
    if finished_match and (next_match is None or finished_match.start() > next_match.start()):
        return Plan(
            PlanStatus.FINISHED, reasoning, content, action=_final_action(finished_match, content)
        )
    if next_match:
        instruction = _instruction(next_match, content)
        if instruction:
            return Plan(PlanStatus.NEXT, reasoning, content, instruction=instruction)
        return Plan(
            PlanStatus.INVALID,
            reasoning,
            content,
            error='the next step is empty; write one instruction after "Next step:"',
        )

    answer = _last(_ANSWER, content)
    if answer and answer.group("text").strip():
        return Plan(
            PlanStatus.FINISHED,
            reasoning,
            content,
            action=Answer(action="answer", text=answer.group("text").strip()),
        )
    return _from_tool_call(reasoning, content)


def _last(pattern: re.Pattern[str], content: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(content))
    return matches[-1] if matches else None


def _instruction(match: re.Match[str], content: str) -> str:
    """Return the text after "Next step:", or the next line when the label stands alone."""
    text = _clean(match.group("text"))
    if text:
        return text
    for line in content[match.end() :].splitlines():
        if line.strip():
            return _clean(line)
    return ""


def _clean(text: str) -> str:
    return text.strip().strip("*_").strip()


def _final_action(match: re.Match[str], content: str) -> Action:
    answer = _ANSWER.search(content, match.end())
    if answer and answer.group("text").strip():
        return Answer(action="answer", text=answer.group("text").strip())
    status = match.group("text").lower()
    return Terminate(action="terminate", status="success" if status == "success" else "failure")


def _from_tool_call(reasoning: str, content: str) -> Plan:
    parsed = parse_reply(content)
    if isinstance(parsed.action, Terminate | Answer):
        return Plan(PlanStatus.FINISHED, reasoning, content, action=parsed.action)
    if parsed.action is not None:
        error = (
            f"the planner describes the next step in words and does not call tools; {FORMAT_HINT}"
        )
    else:
        error = f"the reply has no next step; {FORMAT_HINT}"
    return Plan(PlanStatus.INVALID, reasoning, content, error=error)
