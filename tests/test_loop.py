"""The agent loop with scripted models and the fake executor: stopping, retries, approval, modes."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from PIL import Image

from agent.actions import Key, LeftClick, Terminate, Type
from agent.approval import AlwaysAsk, ApprovalRequest, AskWhenRisky, Decision, Verdict
from agent.control import RunControl
from agent.deciding import CallSettings
from agent.errors import ExecutorError
from agent.loop import LoopSettings
from agent.models.base import ChatRequest, ModelReply, Usage
from agent.models.testing import ScriptedModel
from agent.steps import (
    ActionProposed,
    CallRole,
    Mode,
    ModelReplied,
    ModelSlot,
    RunFinished,
    RunStarted,
    RunStatus,
    StateChanged,
    StepFinished,
    StepOutcome,
    StepStarted,
    StepState,
    TextGenerated,
)
from executors.base import ExecutionResult
from executors.fake import FakeExecutor
from tests.loop_doubles import EventLog, make_loop, prompt_text, screens, tool_call

CLICK = tool_call("Action: click the middle.", action="left_click", coordinate=[500, 500])
DONE = tool_call(action="terminate", status="success")


def _steps(events: EventLog) -> list[StepFinished]:
    return events.of(StepFinished)


# Ending a run.


def test_terminate_success_ends_run() -> None:
    model = ScriptedModel([CLICK, DONE])
    executor = FakeExecutor(screens(3))

    outcome = make_loop(model, executor).run("click it")

    assert outcome.status is RunStatus.SUCCESS
    assert outcome.completed
    assert outcome.steps == 2
    assert executor.actions == [LeftClick(action="left_click", coordinate=(500, 500))]


def test_terminate_failure_is_not_completed() -> None:
    outcome = make_loop(ScriptedModel([tool_call(action="terminate", status="failure")])).run("t")

    assert outcome.status is RunStatus.FAILURE
    assert not outcome.completed


def test_answer_ends_run_with_text() -> None:
    outcome = make_loop(ScriptedModel([tool_call(action="answer", text="42")])).run("how many?")

    assert outcome.status is RunStatus.ANSWERED
    assert outcome.answer == "42"
    assert outcome.completed


def test_step_limit_stops_run() -> None:
    model = ScriptedModel(lambda request: CLICK)
    executor = FakeExecutor(screens(10))

    outcome = make_loop(model, executor, settings=LoopSettings(max_steps=3)).run("t")

    assert outcome.status is RunStatus.STEP_LIMIT
    assert outcome.steps == 3
    assert len(executor.actions) == 3


def test_time_limit_stops_run() -> None:
    now = [0.0]

    def respond(request: ChatRequest) -> str:
        now[0] += 4.0
        return CLICK

    loop = make_loop(
        ScriptedModel(respond), settings=LoopSettings(max_seconds=10), clock=lambda: now[0]
    )

    outcome = loop.run("t")

    assert outcome.status is RunStatus.TIME_LIMIT
    assert outcome.steps == 3
    assert "10 s" in outcome.message


def test_token_limit_stops_and_caps_requests() -> None:
    def respond(request: ChatRequest) -> ModelReply:
        return ModelReply(text=CLICK, content=CLICK, usage=Usage(completion_tokens=40))

    model = ScriptedModel(respond)
    settings = LoopSettings(max_tokens=100, calls=CallSettings(actor_max_tokens=512))

    outcome = make_loop(model, settings=settings).run("t")

    assert outcome.status is RunStatus.TOKEN_LIMIT
    assert outcome.generated_tokens == 120
    assert [request.max_tokens for request in model.requests] == [100, 60, 20]


# Invalid replies.


def test_invalid_reply_goes_back_to_model() -> None:
    bad = tool_call(action="left_click", coordinate=[500, 1500])
    model = ScriptedModel([bad, CLICK, DONE])
    executor = FakeExecutor(screens(3))
    events = EventLog()

    outcome = make_loop(model, executor, events=events).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert len(executor.actions) == 1
    retry_prompt = prompt_text(model.requests[1])
    assert "could not run" in retry_prompt
    assert "1500" in retry_prompt
    first_step = _steps(events)[0].record
    assert [call.status for call in first_step.calls] == ["invalid", "ok"]


def test_invalid_reply_limit_stops_run() -> None:
    model = ScriptedModel(["no tool call here"] * 3)
    executor = FakeExecutor(screens(2))

    outcome = make_loop(model, executor, settings=LoopSettings(max_invalid_replies=3)).run("t")

    assert outcome.status is RunStatus.INVALID_REPLIES
    assert executor.actions == []
    assert len(model.requests) == 3


def test_truncated_reply_never_runs() -> None:
    cut = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_cl'
    model = ScriptedModel([cut, DONE])
    executor = FakeExecutor(screens(2))

    outcome = make_loop(model, executor).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert executor.actions == []
    assert "cut off" in prompt_text(model.requests[1])


# The loop guard.


def test_repeat_on_unchanged_screen_warns_then_stops() -> None:
    model = ScriptedModel(lambda request: CLICK)
    executor = FakeExecutor([Image.new("RGB", (320, 200), "white")])

    outcome = make_loop(model, executor).run("t")

    assert outcome.status is RunStatus.STUCK
    assert len(executor.actions) == 1
    assert "again on the same screen" in prompt_text(model.requests[2])
    assert len(model.requests) == 3


def test_repeat_with_changing_screen_is_fine() -> None:
    model = ScriptedModel([CLICK, CLICK, CLICK, DONE])
    executor = FakeExecutor(screens(5))

    outcome = make_loop(model, executor).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert len(executor.actions) == 3


def test_warning_lets_model_change_course() -> None:
    other = tool_call(action="left_click", coordinate=[100, 100])
    model = ScriptedModel([CLICK, CLICK, other, DONE])
    executor = FakeExecutor([Image.new("RGB", (320, 200), "white")])

    outcome = make_loop(model, executor).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert executor.actions == [
        LeftClick(action="left_click", coordinate=(500, 500)),
        LeftClick(action="left_click", coordinate=(100, 100)),
    ]


def test_unchanged_screen_reported_next_step() -> None:
    model = ScriptedModel([CLICK, tool_call(action="key", keys=["tab"]), DONE])
    executor = FakeExecutor([Image.new("RGB", (320, 200), "white")])
    events = EventLog()

    make_loop(model, executor, events=events).run("t")

    assert "The screen did not change" in prompt_text(model.requests[1])
    assert [step.record.screen_changed for step in _steps(events)] == [None, False, False]


# Approval.


def _ask_with(*decisions: Decision) -> tuple[AlwaysAsk, list[ApprovalRequest]]:
    seen_requests: list[ApprovalRequest] = []
    queue = list(decisions)

    def ask(request: ApprovalRequest) -> Decision:
        seen_requests.append(request)
        return queue.pop(0) if queue else Decision.approve("test")

    return AlwaysAsk(ask), seen_requests


def test_approval_sees_mapped_point() -> None:
    hook, seen_requests = _ask_with()
    executor = FakeExecutor(screens(3, size=(1001, 501)))

    make_loop(ScriptedModel([CLICK, DONE]), executor, approval=hook).run("t")

    assert seen_requests[0].point == (500, 250)
    assert seen_requests[0].action == LeftClick(action="left_click", coordinate=(500, 500))
    assert isinstance(seen_requests[1].action, Terminate)


def test_edit_runs_edited_action() -> None:
    edited = LeftClick(action="left_click", coordinate=(0, 0))
    hook, _ = _ask_with(Decision(Verdict.EDIT, action=edited, source="person"))
    executor = FakeExecutor(screens(3))
    events = EventLog()

    make_loop(ScriptedModel([CLICK, DONE]), executor, approval=hook, events=events).run("t")

    assert executor.actions == [edited]
    record = _steps(events)[0].record
    assert record.proposed == LeftClick(action="left_click", coordinate=(500, 500))
    assert record.action == edited
    assert record.point == (0, 0)


def test_skip_runs_nothing() -> None:
    hook, _ = _ask_with(Decision(Verdict.SKIP, source="person"))
    model = ScriptedModel([CLICK, DONE])
    executor = FakeExecutor(screens(3))
    events = EventLog()

    outcome = make_loop(model, executor, approval=hook, events=events).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert executor.actions == []
    assert _steps(events)[0].record.outcome is StepOutcome.SKIPPED
    assert "skipped the previous step" in prompt_text(model.requests[1])


def test_deny_hint_reaches_planner() -> None:
    hook, _ = _ask_with(Decision(Verdict.DENY, hint="use the search box instead", source="person"))
    planner = ScriptedModel(
        ["</think>Next step: Click the big button.", "</think>Finished: success"],
        name="planner",
        thinking=True,
    )
    grounder = ScriptedModel([CLICK])
    executor = FakeExecutor(screens(3))

    outcome = make_loop(
        grounder,
        executor,
        thinking=planner,
        approval=hook,
        settings=LoopSettings(mode=Mode.TWO_MODEL),
    ).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert executor.actions == []
    assert "use the search box instead" in prompt_text(planner.requests[1])


def test_abort_verdict_aborts_run() -> None:
    hook, _ = _ask_with(Decision(Verdict.ABORT, source="person"))
    executor = FakeExecutor(screens(2))
    events = EventLog()

    outcome = make_loop(ScriptedModel([CLICK]), executor, approval=hook, events=events).run("t")

    assert outcome.status is RunStatus.ABORTED
    assert executor.actions == []
    assert _steps(events)[0].record.outcome is StepOutcome.ABORTED


def test_risky_policy_asks_only_risky() -> None:
    seen_requests: list[ApprovalRequest] = []

    def ask(request: ApprovalRequest) -> Decision:
        seen_requests.append(request)
        return Decision.approve("person")

    model = ScriptedModel([CLICK, tool_call(action="key", keys=["alt", "f4"]), DONE])

    make_loop(model, approval=AskWhenRisky(ask)).run("t")

    assert [request.action for request in seen_requests] == [Key(action="key", keys=["alt", "f4"])]
    assert "closes the focused window" in seen_requests[0].risk


def test_enter_in_terminal_is_risky() -> None:
    seen_requests: list[ApprovalRequest] = []

    def ask(request: ApprovalRequest) -> Decision:
        seen_requests.append(request)
        return Decision(Verdict.SKIP, source="person")

    model = ScriptedModel([tool_call(action="type", text="rm -rf build\n"), DONE])
    executor = FakeExecutor(screens(3), extras={"window_title": "user@host: ~/project"})

    make_loop(model, executor, approval=AskWhenRisky(ask)).run("t")

    assert len(seen_requests) == 1
    assert "runs a command" in seen_requests[0].risk
    assert executor.actions == []


# Aborting and waiting.


def test_abort_from_another_thread() -> None:
    control = RunControl()
    model = ScriptedModel(lambda request: tool_call(action="wait", time=30))
    threading.Timer(0.3, control.abort).start()

    started = time.monotonic()
    outcome = make_loop(model, control=control).run("t")

    assert outcome.status is RunStatus.ABORTED
    assert time.monotonic() - started < 1.5


def test_wait_sleeps_in_loop() -> None:
    executor = FakeExecutor(screens(3))
    model = ScriptedModel([tool_call(action="wait", time=0.2), DONE])

    started = time.monotonic()
    outcome = make_loop(model, executor).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert time.monotonic() - started >= 0.2
    assert executor.actions == []


def test_wait_capped_by_setting() -> None:
    model = ScriptedModel([tool_call(action="wait", time=60), DONE])

    started = time.monotonic()
    make_loop(model, settings=LoopSettings(max_wait_seconds=0.1)).run("t")

    assert time.monotonic() - started < 2


# Executor results and errors.


def test_failed_action_reported_to_model() -> None:
    executor = FakeExecutor(screens(3), results=[ExecutionResult.failed("the element is disabled")])
    model = ScriptedModel([CLICK, DONE])
    events = EventLog()

    make_loop(model, executor, events=events).run("t")

    assert _steps(events)[0].record.outcome is StepOutcome.FAILED
    assert "the element is disabled" in prompt_text(model.requests[1])


def test_executor_error_ends_run() -> None:
    def explode(action: object) -> ExecutionResult:
        raise ExecutorError("the browser page was closed")

    finished: list[object] = []

    class Recorder:
        def begin(self, task: str, settings: dict) -> None:
            pass

        def record_step(self, record: object) -> None:
            finished.append(record)

        def finish(self, outcome: object) -> None:
            finished.append(outcome)

    executor = FakeExecutor(screens(2), results=explode)

    outcome = make_loop(ScriptedModel([CLICK]), executor, recorder=Recorder()).run("t")

    assert outcome.status is RunStatus.ERROR
    assert "page was closed" in outcome.message
    assert len(finished) == 2


# Secrets.


def test_secret_typed_but_never_shown() -> None:
    from agent.safety import Secrets

    secrets = Secrets({"PASSWORD": "hunter2-very-secret"})
    failing = ExecutionResult.failed("typing hunter2-very-secret failed")
    executor = FakeExecutor(screens(4), results=[failing])
    model = ScriptedModel([tool_call(action="type", text="{{secret:PASSWORD}}\n"), DONE])
    events = EventLog()

    make_loop(model, executor, secrets=secrets, events=events).run("log in")

    assert executor.actions == [Type(action="type", text="hunter2-very-secret\n")]
    assert all("hunter2-very-secret" not in prompt_text(request) for request in model.requests)
    assert "{{secret:PASSWORD}}" in prompt_text(model.requests[0])
    record = _steps(events)[0].record
    assert record.action == Type(action="type", text="{{secret:PASSWORD}}\n")
    assert record.result is not None and "hunter2" not in record.result.reason
    assert "types the secret PASSWORD" in record.risk


def test_secret_hidden_from_approval_and_outcome() -> None:
    """A model writes a secret's value itself. The approval request shows the placeholder,
    the executor still gets the value, and an edit with the placeholder gets it back."""
    from agent.safety import Secrets

    secrets = Secrets({"PASSWORD": "hunter2-very-secret"})
    replies = [
        tool_call(action="type", text="hunter2-very-secret"),
        tool_call(action="type", text="hunter2-very-secret"),
        tool_call(action="answer", text="it is hunter2-very-secret"),
    ]
    approval, seen = _ask_with(
        Decision.approve("person"),
        Decision(Verdict.EDIT, action=Type(action="type", text="{{secret:PASSWORD}}!")),
    )

    executor = FakeExecutor(screens(4))
    events = EventLog()
    loop = make_loop(
        ScriptedModel(replies), executor, secrets=secrets, approval=approval, events=events
    )
    outcome = loop.run("log in")

    assert [request.action for request in seen[:2]] == [
        Type(action="type", text="{{secret:PASSWORD}}")
    ] * 2
    assert all("hunter2" not in request.description for request in seen)
    assert executor.actions == [
        Type(action="type", text="hunter2-very-secret"),
        Type(action="type", text="hunter2-very-secret!"),
    ]
    assert outcome.answer == "it is {{secret:PASSWORD}}"
    assert "types the secret PASSWORD" in _steps(events)[1].record.risk


def test_unknown_secret_is_invalid() -> None:
    model = ScriptedModel([tool_call(action="type", text="{{secret:TOKEN}}"), DONE])
    executor = FakeExecutor(screens(2))

    make_loop(model, executor).run("t")

    assert executor.actions == []
    assert "the secret 'TOKEN' does not exist" in prompt_text(model.requests[1])


# Modes.


def test_two_model_plans_then_grounds() -> None:
    planner = ScriptedModel(
        [
            "The button is top left.</think>\nNext step: Click the blue OK button.",
            "</think>Finished: success\nAnswer: done",
        ],
        name="planner",
        thinking=True,
    )
    grounder = ScriptedModel([CLICK], name="grounder")
    events = EventLog()

    outcome = make_loop(
        grounder, thinking=planner, settings=LoopSettings(mode=Mode.TWO_MODEL), events=events
    ).run("t")

    assert outcome.status is RunStatus.ANSWERED
    assert outcome.answer == "done"
    assert "Instruction: Click the blue OK button." in prompt_text(grounder.requests[0])
    assert len(grounder.requests[0].messages) == 2
    assert grounder.requests[0].temperature == 0.0
    first = _steps(events)[0].record
    assert [call.role for call in first.calls] == [CallRole.PLANNER, CallRole.GROUNDER]
    assert first.instruction == "Click the blue OK button."
    assert first.reasoning == "The button is top left."
    assert first.decider is ModelSlot.THINKING


def test_grounder_cannot_finish_task() -> None:
    planner = ScriptedModel(
        ["</think>Next step: Click OK.", "</think>Finished: success"], thinking=True
    )
    grounder = ScriptedModel([DONE, CLICK])
    executor = FakeExecutor(screens(3))

    outcome = make_loop(
        grounder, executor, thinking=planner, settings=LoopSettings(mode=Mode.TWO_MODEL)
    ).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert len(executor.actions) == 1
    assert "only the planner can end the task" in prompt_text(grounder.requests[1])
    assert len(planner.requests) == 2


def test_invalid_plan_goes_back_to_planner() -> None:
    planner = ScriptedModel(["</think>I am not sure.", "</think>Finished: success"], thinking=True)

    outcome = make_loop(
        ScriptedModel([]), thinking=planner, settings=LoopSettings(mode=Mode.TWO_MODEL)
    ).run("t")

    assert outcome.status is RunStatus.SUCCESS
    assert "Next step:" in prompt_text(planner.requests[1])


def test_plan_cut_off_at_token_limit() -> None:
    """A planner reply that hit max_tokens after its reasoning is reported as cut off."""
    cut_off = ModelReply("</think>The button is at the top, so I will", finish_reason="length")
    planner = ScriptedModel([cut_off, "</think>Finished: success"], thinking=True)
    events = EventLog()

    make_loop(
        ScriptedModel([]),
        thinking=planner,
        settings=LoopSettings(mode=Mode.TWO_MODEL),
        events=events,
    ).run("t")

    assert "cut off at the limit of" in prompt_text(planner.requests[1])
    call = _steps(events)[0].record.calls[0]
    assert call.status == "truncated"


def test_escalating_records_deciders() -> None:
    planner = ScriptedModel(
        ["</think>Next step: Click the middle.", "</think>Next step: Press tab."],
        name="thinking",
        thinking=True,
    )
    tab = tool_call(action="key", keys=["tab"])
    instruct = ScriptedModel(
        [
            CLICK,  # step 1, grounding the plan
            tool_call(action="left_click", coordinate=[10, 10]),  # step 2, alone
            "not a tool call",  # step 3, invalid: the Thinking model re-plans
            tab,  # step 3, grounding the new plan
            DONE,  # step 4, alone
        ],
        name="instruct",
    )
    events = EventLog()

    outcome = make_loop(
        instruct, thinking=planner, settings=LoopSettings(mode=Mode.ESCALATING), events=events
    ).run("t")

    assert outcome.status is RunStatus.SUCCESS
    deciders = [step.record.decider for step in _steps(events)]
    assert deciders == [
        ModelSlot.THINKING,
        ModelSlot.INSTRUCT,
        ModelSlot.THINKING,
        ModelSlot.INSTRUCT,
    ]
    step_three = _steps(events)[2].record
    assert [call.role for call in step_three.calls] == [
        CallRole.ACTOR,
        CallRole.PLANNER,
        CallRole.GROUNDER,
    ]


def test_escalating_replans_on_unchanged_screen() -> None:
    planner = ScriptedModel(
        ["</think>Next step: Click the middle.", "</think>Finished: failure"], thinking=True
    )
    instruct = ScriptedModel([CLICK, tool_call(action="key", keys=["tab"])])
    executor = FakeExecutor([Image.new("RGB", (320, 200), "white")])
    events = EventLog()

    outcome = make_loop(
        instruct,
        executor,
        thinking=planner,
        settings=LoopSettings(mode=Mode.ESCALATING),
        events=events,
    ).run("t")

    assert outcome.status is RunStatus.FAILURE
    assert [step.record.decider for step in _steps(events)] == [
        ModelSlot.THINKING,
        ModelSlot.THINKING,
    ]


def test_modes_need_thinking_model() -> None:
    with pytest.raises(ValueError, match="needs a Thinking model"):
        make_loop(ScriptedModel([]), settings=LoopSettings(mode=Mode.TWO_MODEL))


# Events and logging.


def test_events_arrive_in_order() -> None:
    events = EventLog()

    make_loop(ScriptedModel([CLICK, DONE]), events=events).run("t")

    kinds = [type(event) for event in events.events]
    assert kinds[0] is RunStarted
    assert kinds[-1] is RunFinished
    first_step = kinds[1 : kinds.index(StepFinished) + 1]
    assert first_step[0] is StateChanged
    assert StepStarted in first_step
    assert (
        first_step.index(ModelReplied)
        < first_step.index(ActionProposed)
        < first_step.index(StepFinished)
    )
    states = [event.state for event in events.of(StateChanged) if event.step == 1]
    assert states == [
        StepState.OBSERVING,
        StepState.ACTING,
        StepState.AWAITING_APPROVAL,
        StepState.EXECUTING,
        StepState.DONE,
    ]


def test_state_transitions_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.loop")

    make_loop(ScriptedModel(["bad", CLICK, DONE])).run("t")

    lines = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("step 1 state")
    ]
    assert lines == [
        "step 1 state observing",
        "step 1 state acting",
        "step 1 state awaiting_approval",
        "step 1 state executing",
        "step 1 state done",
    ]


def test_timings_cover_phases() -> None:
    events = EventLog()

    make_loop(ScriptedModel([CLICK, DONE]), events=events).run("t")

    timings = _steps(events)[0].record.timings
    assert {"observe", "hash", "model", "parse", "approval", "execute"} <= set(timings)
    assert all(value >= 0 for value in timings.values())


def test_reply_text_streams_as_events() -> None:
    events = EventLog()
    make_loop(ScriptedModel([CLICK, DONE]), FakeExecutor(screens(3)), events=events).run("click it")

    streamed = "".join(event.text for event in events.of(TextGenerated) if event.step == 1)
    replied = next(event for event in events.of(ModelReplied) if event.step == 1)
    assert streamed == replied.call.reply.text


def test_abort_during_model_call_stops_run() -> None:
    control = RunControl()

    def slow_reply(request: ChatRequest) -> str:
        control.abort()
        assert request.cancelled is not None
        assert request.cancelled()
        return CLICK

    executor = FakeExecutor(screens(3))
    outcome = make_loop(ScriptedModel(slow_reply), executor, control=control).run("click it")

    assert outcome.status is RunStatus.ABORTED
    assert executor.actions == []


@pytest.mark.parametrize(
    ("decider", "planner", "actor"), [(ModelSlot.THINKING, 1, 0), (ModelSlot.INSTRUCT, 1, 1)]
)
def test_escalating_repeat_warning_once(decider: ModelSlot, planner: int, actor: int) -> None:
    from agent.deciding import Attempt, Decider, Models, Proposal
    from agent.history import History
    from agent.prompts import PromptFacts
    from agent.safety import Secrets

    decider_object = Decider(
        task="t",
        models=Models(ScriptedModel(), ScriptedModel()),
        mode=Mode.ESCALATING,
        history=History(),
        facts=PromptFacts.for_today("an X11 desktop", ()),
        secrets=Secrets(),
        settings=CallSettings(),
        ask=None,  # type: ignore[arg-type]
        on_call=None,  # type: ignore[arg-type]
    )
    attempt = Attempt(1, None)  # type: ignore[arg-type]

    decider_object.warn_repeat(
        attempt, Proposal(LeftClick(action="left_click", coordinate=(1, 2)), decider)
    )

    assert len(attempt.planner_notes) == planner
    assert len(attempt.actor_notes) == actor
    assert attempt.use_planner
