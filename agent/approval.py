"""Approval of each action before it runs, as data.

The loop builds an `ApprovalRequest` for every proposed action and calls one
`ApprovalHook`. The hook returns a `Decision`: approve, edit (with a new action),
skip, deny (with a hint for the planner) or abort. The TUI, the stdin prompt and
`--yes` are three hooks; the loop imports none of them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.actions import Action, describe_action
from executors.base import Observation


class Verdict(enum.StrEnum):
    APPROVE = "approve"
    EDIT = "edit"
    SKIP = "skip"
    DENY = "deny"
    ABORT = "abort"


@dataclass(frozen=True)
class ApprovalRequest:
    """One proposed action, with what a person needs to judge it."""

    step: int
    task: str
    action: Action
    observation: Observation
    # The input point the action will be sent to, or None for actions without a coordinate.
    point: tuple[int, int] | None = None
    reasoning: str = ""
    # The planner's instruction to the grounding model, empty in single-model mode.
    instruction: str = ""
    # Why the step is risky, or empty when it is not.
    risk: str = ""

    @property
    def description(self) -> str:
        text = describe_action(self.action)
        if self.point is not None:
            text += f" → input point ({self.point[0]}, {self.point[1]})"
        return text


@dataclass(frozen=True)
class Decision:
    """A person's (or a policy's) answer to one approval request."""

    verdict: Verdict
    # The replacement action, for EDIT.
    action: Action | None = None
    # Text sent back to the planner, for DENY.
    hint: str = ""
    # Who decided: "policy:auto", "person", "tui" and so on, for the recording.
    source: str = "policy"

    def __post_init__(self) -> None:
        if self.verdict is Verdict.EDIT and self.action is None:
            raise ValueError("an EDIT decision needs the edited action")

    @classmethod
    def approve(cls, source: str = "policy") -> Decision:
        return cls(Verdict.APPROVE, source=source)


class ApprovalHook(Protocol):
    def __call__(self, request: ApprovalRequest) -> Decision: ...


Ask = Callable[[ApprovalRequest], Decision]


class AutoApprove:
    """Approve every action (`--yes`)."""

    def __call__(self, request: ApprovalRequest) -> Decision:
        return Decision.approve("policy:auto")


class AlwaysAsk:
    """Ask a person about every action."""

    def __init__(self, ask: Ask) -> None:
        self._ask = ask

    def __call__(self, request: ApprovalRequest) -> Decision:
        return self._ask(request)


class AskWhenRisky:
    """Approve ordinary actions and ask a person about risky ones."""

    def __init__(self, ask: Ask) -> None:
        self._ask = ask

    def __call__(self, request: ApprovalRequest) -> Decision:
        if request.risk:
            return self._ask(request)
        return Decision.approve("policy:risky-only")


POLICIES = ("auto", "always", "risky")


def make_policy(name: str, ask: Ask) -> ApprovalHook:
    """Build a built-in policy by name: auto, always or risky."""
    if name == "auto":
        return AutoApprove()
    if name == "always":
        return AlwaysAsk(ask)
    if name == "risky":
        return AskWhenRisky(ask)
    raise ValueError(f"unknown approval policy {name!r}; use one of: {', '.join(POLICIES)}")
