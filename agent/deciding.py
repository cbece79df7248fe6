"""Choose one step's action with the configured models, across retries.

Three ways to decide, set by `Mode`:

- single: the Instruct model plans and acts in one call (the actor);
- two-model: the Thinking model plans in words, the Instruct model grounds the plan
  into one `computer_use` call;
- escalating: the Instruct model acts alone, and the Thinking model plans instead at
  the first step and after an invalid reply, an unchanged screen, a denied step or a
  loop-guard warning (the loop sets `Attempt.use_planner` for those).

A reply that cannot run becomes a `Rejection`. `reject` turns it into a note for the
model that wrote it, so the next attempt shows the parser's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agent.actions import FINAL_ACTIONS, Action, describe_action
from agent.errors import InvalidReplyError
from agent.history import History, PromptTurns
from agent.models.base import ChatModel, ChatRequest, ImagePart, Message, ModelReply, TextPart
from agent.parsing import CALL_OPEN, ParsedReply, ReplyStatus, parse_reply
from agent.planner import Plan, PlanStatus, parse_plan
from agent.prompts import PromptFacts, PromptKind, feedback, render, system_prompt
from agent.safety import Secrets, placeholder_names
from agent.steps import CallRole, Mode, ModelCall, ModelSlot, StepState
from executors.base import Observation


@dataclass(frozen=True)
class Models:
    """The models of one run. `thinking` is needed by the two-model and escalating modes."""

    instruct: ChatModel
    thinking: ChatModel | None = None


@dataclass(frozen=True)
class CallSettings:
    """Generation settings per kind of call."""

    actor_max_tokens: int = 512
    planner_max_tokens: int = 4096
    # Reasoning tokens the planner may spend before the backend closes its reasoning.
    reasoning_budget: int | None = 2048
    # None means the model card's default temperature.
    actor_temperature: float | None = None
    planner_temperature: float | None = None
    grounder_temperature: float | None = 0.0
    constrain_tool_call: bool = True
    seed: int | None = None


@dataclass
class Attempt:
    """The state of deciding one step, kept across retries within the step."""

    step: int
    observation: Observation
    use_planner: bool = False
    plan: Plan | None = None
    planner_notes: list[str] = field(default_factory=list)
    actor_notes: list[str] = field(default_factory=list)
    calls: list[ModelCall] = field(default_factory=list)
    invalid: int = 0


@dataclass(frozen=True)
class Proposal:
    """An action chosen by the models, before approval."""

    action: Action
    decider: ModelSlot
    reasoning: str = ""
    instruction: str = ""
    # Free text the model wrote before its tool call, kept for the history turn.
    preface: str = ""


@dataclass(frozen=True)
class Rejection:
    """A reply that cannot run. `error` is written to go back to the model."""

    role: CallRole
    slot: ModelSlot
    error: str


# Sends one request and returns the reply with the call's wall time in seconds. The
# loop's version checks the limits first and reports the state change.
Ask = Callable[[Attempt, CallRole, ModelSlot, ChatRequest], tuple[ModelReply, float]]
# Receives each finished call, for events and the step record.
CallSink = Callable[[Attempt, ModelCall], None]


class Decider:
    """Builds prompts, calls the models and parses their replies for one run."""

    def __init__(
        self,
        *,
        task: str,
        models: Models,
        mode: Mode,
        history: History,
        facts: PromptFacts,
        secrets: Secrets,
        settings: CallSettings,
        ask: Ask,
        on_call: CallSink,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode is not Mode.SINGLE and models.thinking is None:
            raise ValueError(
                f"mode {mode} needs a Thinking model; configure one or use mode single"
            )
        self.task = task
        self.models = models
        self.mode = mode
        self.history = history
        self.secrets = secrets
        self.settings = settings
        self._ask = ask
        self._on_call = on_call
        self._clock = clock
        # Rendered once per run: the date and platform stay fixed, and the prefix stays cacheable.
        self._systems = {kind: system_prompt(kind, facts) for kind in PromptKind}

    def wants_planner(self, attempt: Attempt) -> bool:
        match self.mode:
            case Mode.SINGLE:
                return False
            case Mode.TWO_MODEL:
                return True
            case Mode.ESCALATING:
                return attempt.use_planner
        raise AssertionError(f"unhandled mode {self.mode!r}")

    def propose(self, attempt: Attempt) -> Proposal | Rejection:
        """Run the model calls for one attempt and return an action or the reason there is none."""
        if self.wants_planner(attempt) and attempt.plan is None:
            plan = self._plan(attempt)
            if isinstance(plan, Rejection):
                return plan
            if plan.action is not None:
                return Proposal(plan.action, ModelSlot.THINKING, plan.reasoning)
            attempt.plan = plan
        if attempt.plan is not None:
            return self._ground(attempt, attempt.plan)
        return self._act(attempt)

    def reject(self, attempt: Attempt, rejection: Rejection) -> None:
        """Count an invalid reply and queue the parser's message for the model that wrote it."""
        attempt.invalid += 1
        if rejection.role is CallRole.PLANNER:
            attempt.planner_notes.append(feedback("invalid_plan", error=rejection.error))
            return
        attempt.actor_notes.append(feedback("invalid_reply", error=rejection.error))
        if self.mode is Mode.ESCALATING and rejection.role is CallRole.ACTOR:
            attempt.use_planner = True

    def warn_repeat(self, attempt: Attempt, proposal: Proposal) -> None:
        """Tell the deciding model that its action repeats one that left the screen unchanged."""
        note = feedback("repeated_action", action=describe_action(proposal.action))
        if proposal.decider is ModelSlot.THINKING:
            attempt.planner_notes.append(note)
            attempt.plan = None
        else:
            attempt.actor_notes.append(note)
        if self.mode is Mode.ESCALATING:
            attempt.use_planner = True
            attempt.plan = None
            if proposal.decider is not ModelSlot.THINKING:
                attempt.planner_notes.append(note)

    # The three kinds of call.

    def _act(self, attempt: Attempt) -> Proposal | Rejection:
        turns = PromptTurns(
            self._systems[PromptKind.SINGLE],
            self.task,
            attempt.step,
            attempt.observation.image,
            tuple(attempt.actor_notes),
        )
        request = self._request(self.history.messages(turns), CallRole.ACTOR)
        reply, parsed = self._call_for_action(attempt, CallRole.ACTOR, request)
        if parsed.action is None:
            return Rejection(CallRole.ACTOR, ModelSlot.INSTRUCT, parsed.error)
        return Proposal(
            parsed.action,
            ModelSlot.INSTRUCT,
            parsed.thinking or reply.reasoning,
            preface=_preface(parsed),
        )

    def _plan(self, attempt: Attempt) -> Plan | Rejection:
        turns = PromptTurns(
            self._systems[PromptKind.PLANNER],
            self.task,
            attempt.step,
            attempt.observation.image,
            tuple(attempt.planner_notes),
        )
        request = self._request(self.history.messages(turns, planner=True), CallRole.PLANNER)
        reply, seconds = self._ask(attempt, CallRole.PLANNER, ModelSlot.THINKING, request)
        started = self._clock()
        plan = parse_plan(reply.text, thinking_opened=True)
        if plan.status is PlanStatus.INVALID and reply.finish_reason == "length":
            # The reply stopped at max_tokens after its reasoning, so "no next step" would mislead.
            plan = replace(
                plan,
                status=PlanStatus.TRUNCATED,
                error=f"the reply was cut off at the limit of {request.max_tokens} tokens "
                'before its "Next step:" line; reason more briefly',
            )
        if plan.status is PlanStatus.NEXT:
            plan = self._checked_plan(plan)
        self._finish_call(
            attempt,
            CallRole.PLANNER,
            request,
            reply,
            (str(plan.status), plan.error),
            (seconds, started),
        )
        if not plan.ok:
            return Rejection(CallRole.PLANNER, ModelSlot.THINKING, plan.error)
        return plan

    def _ground(self, attempt: Attempt, plan: Plan) -> Proposal | Rejection:
        text = render(
            "turn_grounder.jinja", instruction=plan.instruction, notes=attempt.actor_notes
        )
        messages = (
            Message.text("system", self._systems[PromptKind.GROUNDER]),
            Message("user", (ImagePart(attempt.observation.image), TextPart(text))),
        )
        request = self._request(messages, CallRole.GROUNDER)
        _, parsed = self._call_for_action(attempt, CallRole.GROUNDER, request)
        if parsed.action is None:
            return Rejection(CallRole.GROUNDER, ModelSlot.INSTRUCT, parsed.error)
        if isinstance(parsed.action, FINAL_ACTIONS):
            error = feedback("final_not_allowed", action=describe_action(parsed.action))
            return Rejection(CallRole.GROUNDER, ModelSlot.INSTRUCT, error)
        return Proposal(
            parsed.action, ModelSlot.THINKING, plan.reasoning, plan.instruction, _preface(parsed)
        )

    # Helpers.

    def _call_for_action(
        self, attempt: Attempt, role: CallRole, request: ChatRequest
    ) -> tuple[ModelReply, ParsedReply]:
        reply, seconds = self._ask(attempt, role, ModelSlot.INSTRUCT, request)
        started = self._clock()
        parsed = self._checked_reply(parse_reply(reply.text))
        self._finish_call(
            attempt, role, request, reply, (str(parsed.status), parsed.error), (seconds, started)
        )
        return reply, parsed

    def _checked_reply(self, parsed: ParsedReply) -> ParsedReply:
        """Reject a `type` action that names a secret that was not configured."""
        if parsed.action is None:
            return parsed
        try:
            self.secrets.check(parsed.action)
        except InvalidReplyError as exc:
            return ParsedReply(
                ReplyStatus.INVALID, parsed.thinking, parsed.content, None, parsed.dropped, str(exc)
            )
        return parsed

    def _checked_plan(self, plan: Plan) -> Plan:
        missing = [
            name for name in placeholder_names(plan.instruction) if name not in self.secrets.names
        ]
        if not missing:
            return plan
        known = ", ".join(self.secrets.names) or "none"
        error = f"the secret {missing[0]!r} does not exist; the secrets you can use are: {known}"
        return Plan(PlanStatus.INVALID, plan.reasoning, plan.content, error=error)

    def _finish_call(
        self,
        attempt: Attempt,
        role: CallRole,
        request: ChatRequest,
        reply: ModelReply,
        verdict: tuple[str, str],
        times: tuple[float, float],
    ) -> None:
        """Record one call. `verdict` is (status, error); `times` is (call seconds, parse start)."""
        slot = ModelSlot.THINKING if role is CallRole.PLANNER else ModelSlot.INSTRUCT
        model = self.models.thinking if slot is ModelSlot.THINKING else self.models.instruct
        call = ModelCall(
            role=role,
            slot=slot,
            model=model.name if model is not None else "",
            request=request,
            reply=reply,
            status=verdict[0],
            error=verdict[1],
            seconds=times[0],
            parse_seconds=self._clock() - times[1],
        )
        attempt.calls.append(call)
        self._on_call(attempt, call)

    def _request(self, messages: tuple[Message, ...], role: CallRole) -> ChatRequest:
        settings = self.settings
        if role is CallRole.PLANNER:
            return ChatRequest(
                messages,
                max_tokens=settings.planner_max_tokens,
                temperature=settings.planner_temperature,
                reasoning_budget=settings.reasoning_budget,
                seed=settings.seed,
            )
        temperature = (
            settings.grounder_temperature
            if role is CallRole.GROUNDER
            else settings.actor_temperature
        )
        return ChatRequest(
            messages,
            max_tokens=settings.actor_max_tokens,
            temperature=temperature,
            constrain_tool_call=settings.constrain_tool_call,
            seed=settings.seed,
        )


def state_for(role: CallRole) -> StepState:
    match role:
        case CallRole.ACTOR:
            return StepState.ACTING
        case CallRole.PLANNER:
            return StepState.PLANNING
        case CallRole.GROUNDER:
            return StepState.GROUNDING
    raise AssertionError(f"unhandled call role {role!r}")


def _preface(parsed: ParsedReply) -> str:
    """Return the free text a model wrote before its first tool call."""
    if CALL_OPEN not in parsed.content:
        return ""
    return parsed.content.split(CALL_OPEN, 1)[0].strip()
