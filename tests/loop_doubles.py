"""Helpers for tests that drive the agent loop with scripted models and the fake executor."""

from __future__ import annotations

import json
from typing import Any

from PIL import Image

from agent.approval import ApprovalHook, AutoApprove
from agent.control import RunControl
from agent.deciding import Models
from agent.loop import AgentLoop, LoopSettings
from agent.models.base import ChatRequest, TextPart
from agent.recording import NullRecorder
from agent.safety import Secrets
from agent.steps import LoopEvent, StepRecorder
from executors.fake import FakeExecutor


def tool_call(preface: str = "", **arguments: Any) -> str:
    """Write a reply as Qwen3-VL does: optional free text, then one computer_use tool call."""
    body = json.dumps({"name": "computer_use", "arguments": arguments})
    block = f"<tool_call>\n{body}\n</tool_call>"
    return f"{preface}\n{block}" if preface else block


def screens(count: int, size: tuple[int, int] = (320, 200)) -> list[Image.Image]:
    """Return `count` screenshots that all differ, so every action changes the screen."""
    return [Image.new("RGB", size, (index % 256, (index * 37) % 256, 90)) for index in range(count)]


def prompt_text(request: ChatRequest) -> str:
    """Join every text part of a request, for checks on the text a model received."""
    return "\n".join(
        part.text
        for message in request.messages
        for part in message.content
        if isinstance(part, TextPart)
    )


class EventLog:
    """Collects the loop's events."""

    def __init__(self) -> None:
        self.events: list[LoopEvent] = []

    def __call__(self, event: LoopEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


def make_loop(
    instruct: Any,
    executor: FakeExecutor | None = None,
    *,
    thinking: Any = None,
    approval: ApprovalHook | None = None,
    recorder: StepRecorder | None = None,
    settings: LoopSettings | None = None,
    secrets: Secrets | None = None,
    control: RunControl | None = None,
    events: EventLog | None = None,
    **options: Any,
) -> AgentLoop:
    return AgentLoop(
        models=Models(instruct, thinking),
        executor=executor or FakeExecutor(screens(50)),
        approval=approval or AutoApprove(),
        recorder=recorder or NullRecorder(),
        settings=settings or LoopSettings(),
        secrets=secrets,
        control=control,
        on_event=events,
        **options,
    )
