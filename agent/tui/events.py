"""Translate the loop's events (`agent.steps`) into changes on the TUI's screen.

This is the one module of the TUI that imports the loop's event types, so a change there
touches only this file. `RunView` lists what an event can change; `AgentApp` implements it.
Approval requests do not come through here: the approval hook shows them itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from agent.actions import Action
from agent.commands.run import exit_code

__all__ = ["RunView", "apply_event", "exit_code", "summarise"]
from agent.steps import (
    ActionProposed,
    ModelReplied,
    RunFinished,
    RunOutcome,
    RunStarted,
    StateChanged,
    StepFinished,
    StepStarted,
    TextGenerated,
    steps_text,
)
from executors.base import Observation

logger = logging.getLogger(__name__)


class RunView(Protocol):
    def show_step_started(
        self, step: int, observation: Observation | None, action: Action | None = None
    ) -> None: ...

    def show_phase(self, step: int, phase: str) -> None: ...

    def append_reasoning(self, step: int, text: str) -> None: ...

    def show_step_finished(self, step: int, outcome: str, timings: Mapping[str, float]) -> None: ...


def apply_event(view: RunView, event: object) -> None:
    """Update `view` for one loop event; events the screen does not show are ignored."""
    match event:
        case StepStarted(step=step, observation=observation):
            view.show_step_started(step, observation)
        case StateChanged(step=step, state=state):
            view.show_phase(step, state.value.replace("_", " "))
        case TextGenerated(step=step, text=text):
            view.append_reasoning(step, text)
        case ModelReplied(step=step, call=call):
            # The text has already streamed in, so only close it with who wrote it and how long.
            footer = f"{call.role.value} · {call.model} · {call.seconds:.1f} s"
            view.append_reasoning(step, f"\n── {footer} ──\n\n")
        case StepFinished(record=record):
            view.show_step_finished(record.step, record.outcome.value, record.timings)
        case RunStarted() | ActionProposed() | RunFinished():
            # The header already shows the task, the hook shows the proposal, and the
            # worker's return value carries the outcome.
            pass
        case _:
            logger.debug("loop event not shown by the TUI: %r", event)


def summarise(outcome: RunOutcome) -> str:
    """Describe how the run ended in one line for the status bar."""
    text = f"Run ended: {outcome.status.value.replace('_', ' ')} after {steps_text(outcome.steps)}"
    if outcome.answer is not None:
        text += f", answer “{outcome.answer}”"
    if outcome.message:
        text += f" ({outcome.message})"
    reward = outcome.evaluation.get("raw_reward", "missing")
    if reward != "missing":
        shown = "not finished" if reward is None else f"{reward:g}"
        text += f"; MiniWoB++ raw reward {shown}"
    return text + "."
