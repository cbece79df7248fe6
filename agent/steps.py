"""The data the loop produces: step states, step records, run outcomes and events.

A `StepRecord` is everything one step did, in one frozen value: the recorder writes
it, the TUI shows it, and replay compares it with the recorded step. Events carry
the same values to an observer (the TUI) while the run goes on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.actions import Action
from agent.approval import ApprovalRequest, Decision
from agent.models.base import ChatRequest, ModelReply
from executors.base import ExecutionResult, Observation


def steps_text(count: int) -> str:
    """Return "1 step" or "N steps", for messages about a run's length."""
    return "1 step" if count == 1 else f"{count} steps"


class StepState(enum.StrEnum):
    """The phase of one step. The loop logs each transition once, as `step N state S`."""

    OBSERVING = "observing"
    PLANNING = "planning"
    GROUNDING = "grounding"
    ACTING = "acting"  # one model plans and acts in a single call
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    DONE = "done"


class StepOutcome(enum.StrEnum):
    """The way one step ended."""

    EXECUTED = "executed"
    FAILED = "failed"  # the executor ran the action and reported a failure
    SKIPPED = "skipped"
    DENIED = "denied"
    FINISHED = "finished"  # terminate or answer
    STOPPED = "stopped"  # a limit or the loop guard ended the run during the step
    ABORTED = "aborted"
    ERROR = "error"


class CallRole(enum.StrEnum):
    """The purpose of a model call."""

    ACTOR = "actor"  # plans and acts in one call
    PLANNER = "planner"
    GROUNDER = "grounder"


class ModelSlot(enum.StrEnum):
    """The configured model that replied: the Instruct or the Thinking model."""

    INSTRUCT = "instruct"
    THINKING = "thinking"


class Mode(enum.StrEnum):
    """The split of a step's work between the models."""

    SINGLE = "single"  # the Instruct model plans and acts in one call
    TWO_MODEL = "two-model"  # the Thinking model plans, the Instruct model grounds
    ESCALATING = "escalating"  # Instruct alone while it makes progress, Thinking re-plans otherwise


class RunStatus(enum.StrEnum):
    SUCCESS = "success"
    ANSWERED = "answered"
    FAILURE = "failure"  # the model ended the task with status failure
    STEP_LIMIT = "step_limit"
    TIME_LIMIT = "time_limit"
    TOKEN_LIMIT = "token_limit"
    STUCK = "stuck"  # the same action kept being chosen on an unchanged screen
    INVALID_REPLIES = "invalid_replies"
    ABORTED = "aborted"
    ERROR = "error"

    @property
    def completed(self) -> bool:
        return self in (RunStatus.SUCCESS, RunStatus.ANSWERED)


@dataclass(frozen=True)
class ModelCall:
    """One call to a model, with its prompt, raw reply and how the reply was judged."""

    role: CallRole
    slot: ModelSlot
    model: str
    request: ChatRequest
    reply: ModelReply
    # "ok", "no_action", "truncated" or "invalid" for tool calls; "next" or "finished" for plans.
    status: str
    error: str = ""
    seconds: float = 0.0
    parse_seconds: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    """Everything one step did."""

    step: int
    # Wall-clock time (time.time()) when the step began.
    started_at: float
    observation: Observation
    screen_hash: str
    # False when the screen is identical to the one the previous action ran on; None at step 1.
    screen_changed: bool | None
    outcome: StepOutcome
    decider: ModelSlot | None = None
    calls: tuple[ModelCall, ...] = ()
    instruction: str = ""
    reasoning: str = ""
    # The action the models proposed, with secret placeholders, never secret values.
    proposed: Action | None = None
    # The action that ran (or would have): the proposal, or a person's edit of it.
    action: Action | None = None
    point: tuple[int, int] | None = None
    risk: str = ""
    decision: Decision | None = None
    result: ExecutionResult | None = None
    # The note shown to the model at the next step, and any message about how the step ended.
    feedback: str = ""
    # Seconds per phase: observe, hash, model, parse, approval, execute.
    timings: dict[str, float] = field(default_factory=dict)
    # `id()` of each screenshot in this step's prompts, mapped to the step that captured it.
    prompt_images: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """The end of a run: its status, counts and the outside check's findings."""

    status: RunStatus
    steps: int
    message: str = ""
    answer: str | None = None
    generated_tokens: int = 0
    seconds: float = 0.0
    # Findings of an outside check after the run, such as a MiniWoB++ task's raw reward.
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status.completed

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "steps": self.steps,
            "message": self.message,
            "answer": self.answer,
            "generated_tokens": self.generated_tokens,
            "seconds": round(self.seconds, 3),
            "evaluation": dict(self.evaluation),
        }


# Events, delivered to `on_event` on the loop's thread, in this order per step:
# StepStarted, StateChanged (one per state), TextGenerated (many per call, as the
# model generates), ModelReplied (one per call),
# ActionProposed (before the approval hook runs), StepFinished.


@dataclass(frozen=True)
class RunStarted:
    task: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class StepStarted:
    step: int
    observation: Observation


@dataclass(frozen=True)
class StateChanged:
    step: int
    state: StepState


@dataclass(frozen=True)
class TextGenerated:
    """A piece of a model reply as it is generated, reasoning included, for live display."""

    step: int
    role: CallRole
    text: str


@dataclass(frozen=True)
class ModelReplied:
    """One finished model call; `call.reply.reasoning` contains its reasoning."""

    step: int
    call: ModelCall


@dataclass(frozen=True)
class ActionProposed:
    step: int
    request: ApprovalRequest


@dataclass(frozen=True)
class StepFinished:
    record: StepRecord


@dataclass(frozen=True)
class RunFinished:
    outcome: RunOutcome


LoopEvent = (
    RunStarted
    | StepStarted
    | StateChanged
    | TextGenerated
    | ModelReplied
    | ActionProposed
    | StepFinished
    | RunFinished
)


class StepRecorder(Protocol):
    """The receiver of what the loop did. `agent.recording.Recorder` writes it to disk."""

    def begin(self, task: str, settings: dict[str, Any]) -> None:
        """Start a run, before its first step."""
        ...

    def record_step(self, record: StepRecord) -> None:
        """Keep one finished step. Must not block the loop for long."""
        ...

    def finish(self, outcome: RunOutcome) -> None:
        """End the run; everything recorded so far must be durable when this returns."""
        ...
