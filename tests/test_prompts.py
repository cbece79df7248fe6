"""Prompt templates and the planner's reply format."""

from __future__ import annotations

import json
import re
from datetime import date

import jinja2
import pytest

from agent.actions import ACTION_NAMES, Answer, LeftClick, Terminate, Type
from agent.parsing import parse_reply
from agent.planner import PlanStatus, parse_plan
from agent.prompts import (
    PromptFacts,
    PromptKind,
    feedback,
    format_tool_call,
    render,
    system_prompt,
    tool_declaration,
)

FACTS = PromptFacts.for_today("a web page in a Chromium browser", today=date(2026, 3, 5))


def _declared_tool(prompt: str) -> dict:
    match = re.search(r"<tools>\n(.*)\n</tools>", prompt)
    assert match is not None
    lines = match.group(1).splitlines()
    assert len(lines) == 1, "one function signature per line"
    return json.loads(lines[0])


@pytest.mark.parametrize("kind", [PromptKind.SINGLE, PromptKind.GROUNDER])
def test_acting_prompts_declare_tool(kind: PromptKind) -> None:
    prompt = system_prompt(kind, FACTS)

    assert "# Tools" in prompt
    tool = _declared_tool(prompt)
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "computer_use"
    assert "The screen's resolution is 1000x1000" in tool["function"]["description"]
    assert tool["function"]["parameters"]["properties"]["action"]["enum"] == list(ACTION_NAMES)
    assert (
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        in prompt
    )


def test_planner_prompt_asks_for_next_step() -> None:
    prompt = system_prompt(PromptKind.PLANNER, FACTS)

    assert "<tools>" not in prompt
    assert "Next step:" in prompt
    assert "Finished: success" in prompt
    assert "Answer:" in prompt


@pytest.mark.parametrize("kind", list(PromptKind))
def test_facts_rendered_at_call_time(kind: PromptKind) -> None:
    prompt = system_prompt(kind, FACTS)

    assert "Thursday, 5 March 2026" in prompt
    assert "a web page in a Chromium browser" in prompt
    assert "secret" not in prompt


@pytest.mark.parametrize("kind", list(PromptKind))
def test_secret_names_become_placeholders(kind: PromptKind) -> None:
    facts = PromptFacts.for_today("x", secrets=("PASSWORD", "PIN"), today=date(2026, 3, 5))

    prompt = system_prompt(kind, facts)

    assert "* {{secret:PASSWORD}}\n* {{secret:PIN}}" in prompt


def test_tool_declaration_lists_every_argument() -> None:
    properties = tool_declaration()["function"]["parameters"]["properties"]

    assert set(properties) == {"action", "keys", "text", "coordinate", "pixels", "time", "status"}


def test_missing_value_raises() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("turn_task.jinja", earlier=[])


def test_unknown_feedback_raises() -> None:
    with pytest.raises(KeyError, match="no macro named 'nonsense'"):
        feedback("nonsense")
    with pytest.raises(jinja2.UndefinedError):
        feedback("denied", action="Click")


@pytest.mark.parametrize(
    "action",
    [
        LeftClick(action="left_click", coordinate=(12, 900)),
        Type(action="type", text='say "hi"\n'),
        Terminate(action="terminate", status="success"),
    ],
)
def test_formatted_call_parses_back(action: object) -> None:
    parsed = parse_reply(format_tool_call(action, "Action: do it."))  # type: ignore[arg-type]

    assert parsed.action == action
    assert parsed.content.startswith("Action: do it.")


@pytest.mark.parametrize(
    ("reply", "status", "instruction"),
    [
        (
            "Look.</think>\nNext step: Click the “OK” button.",
            PlanStatus.NEXT,
            "Click the “OK” button.",
        ),
        ('</think>**Next step:** Type "a" into the box', PlanStatus.NEXT, 'Type "a" into the box'),
        ("</think>Next step:\n\n  Scroll down the list\n", PlanStatus.NEXT, "Scroll down the list"),
        ("</think>next step: press tab", PlanStatus.NEXT, "press tab"),
        ("</think>Next step: click A\nFinished: success", PlanStatus.FINISHED, ""),
        ("</think>Finished: success\nNext step: click B", PlanStatus.NEXT, "click B"),
        ("</think>Next step:   ", PlanStatus.INVALID, ""),
        ("</think>I do not know.", PlanStatus.INVALID, ""),
        ("still thinking about it", PlanStatus.TRUNCATED, ""),
    ],
)
def test_plan_table(reply: str, status: PlanStatus, instruction: str) -> None:
    plan = parse_plan(reply, thinking_opened=True)

    assert plan.status is status
    assert plan.instruction == instruction
    if status in (PlanStatus.INVALID, PlanStatus.TRUNCATED):
        assert plan.error


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        ("</think>Finished: success", Terminate(action="terminate", status="success")),
        ("</think>- **Finished**: failure", Terminate(action="terminate", status="failure")),
        ("</think>Finished: success\nAnswer: Paris", Answer(action="answer", text="Paris")),
        ("</think>Answer: 42", Answer(action="answer", text="42")),
        (
            "</think>" + format_tool_call(Terminate(action="terminate", status="success")),
            Terminate(action="terminate", status="success"),
        ),
    ],
)
def test_plan_finishes(reply: str, action: object) -> None:
    plan = parse_plan(reply, thinking_opened=True)

    assert plan.status is PlanStatus.FINISHED
    assert plan.action == action


def test_plan_rejects_tool_call_action() -> None:
    reply = "</think>" + format_tool_call(LeftClick(action="left_click", coordinate=(1, 2)))

    plan = parse_plan(reply, thinking_opened=True)

    assert plan.status is PlanStatus.INVALID
    assert "does not call tools" in plan.error


def test_plan_reasoning_split() -> None:
    plan = parse_plan(
        "The OK button is at the top.</think>\nNext step: Click OK.", thinking_opened=True
    )

    assert plan.reasoning == "The OK button is at the top."
