"""Replay a recording: its model replies go through the real loop against a live executor.

The recorded replies are served by strict `ReplayModel`s, one per model slot, and
the recorded approval decisions by the approval hook. The executor starts as the
manifest describes it (browser URL, viewport, device scale factor, MiniWoB++ task
and seed). After every step the replayed step is compared with the recorded one:
the proposed action, the action that ran, its input point and the step's outcome.
The first difference stops the run and is reported as the divergence. A run that
asks for a reply the recording lacks, or ends with replies left over, diverges too.
A recording that ends before its run did (killed, or its last line cut off) is
replayed up to its last step, and the replay stops there.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.actions import parse_action
from agent.approval import ApprovalRequest, Decision, Verdict
from agent.control import RunControl
from agent.deciding import Models
from agent.errors import ConfigError, InvalidReplyError, RecordingError
from agent.loop import AgentLoop, LoopSettings
from agent.models.base import ModelReply, Usage
from agent.models.testing import ReplayModel
from agent.recording import MANIFEST, RecordedStep, Recorder, Recording
from agent.runner import EXECUTOR_KINDS, ExecutorSpec, RunConfig, run_agent
from agent.safety import Secrets
from agent.steps import LoopEvent, RunOutcome, RunStatus, StepFinished, StepOutcome, StepRecord
from executors.base import Executor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Divergence:
    """The first step where the replay differs from the recording."""

    step: int
    what: str
    expected: Any = None
    actual: Any = None

    def describe(self) -> str:
        text = f"step {self.step}: {self.what}"
        if self.expected is not None or self.actual is not None:
            text += f" (recorded {_show(self.expected)}, replayed {_show(self.actual)})"
        return text


@dataclass(frozen=True)
class ReplayResult:
    outcome: RunOutcome
    divergence: Divergence | None
    recorded_steps: int
    record_dir: Path
    evaluation: dict[str, Any] = field(default_factory=dict)
    # Why the recording ends before its run did, when the replay stopped at its last step.
    unfinished_reason: str | None = None

    @property
    def matched(self) -> bool:
        return self.divergence is None


def replay_recording(
    recording: Recording,
    *,
    record_dir: Path,
    executor: Executor | None = None,
    secrets: Mapping[str, str] | None = None,
    headless: bool = True,
) -> ReplayResult:
    """Run a recording's replies through the loop and report the first divergence.

    Without `executor`, the executor recorded in the manifest is started. The replay
    writes its own recording to `record_dir`. Raises `RecordingError` when the manifest
    lacks what the replay needs, before anything starts.
    """
    recording, interrupted_step = _without_interrupted_step(recording)
    manifest = recording.manifest
    settings = _settings(recording)
    # Checked before anything starts, so an invalid executor never launches a browser.
    spec = _executor_spec(recording) if executor is None else None
    models = replay_models(recording)
    checker = StepChecker(recording, RunControl())
    values = dict(secrets) if secrets is not None else secrets_for_replay(manifest)

    if executor is None:
        assert spec is not None
        config = RunConfig(
            task=recording.task,
            record_dir=record_dir,
            executor=replace(spec, headless=headless),
            settings=settings,
            secrets=values,
        )
        outcome = run_agent(
            config, checker.approve, checker.control, checker.on_event, models=models
        )
    else:
        outcome = _replay_on(executor, recording, record_dir, settings, models, checker, values)

    divergence = checker.divergence or _leftovers(recording, models, outcome)
    unfinished_reason = None
    if divergence is None and checker.stopped_at_end and outcome.status is RunStatus.ABORTED:
        if interrupted_step is not None:
            unfinished_reason = f"the original run was aborted during step {interrupted_step}"
        elif recording.finished:
            unfinished_reason = "its last step line was cut off"
        else:
            unfinished_reason = "the original run did not finish"
    return ReplayResult(
        outcome,
        divergence,
        len(recording.steps),
        record_dir,
        dict(outcome.evaluation),
        unfinished_reason,
    )


def _without_interrupted_step(recording: Recording) -> tuple[Recording, int | None]:
    """Drop a last step that an abort cut short, and return the number of that step.

    An abort during a model call or an action leaves a step that cannot be replayed: its
    reply is missing, or its action would now run to the end. The replay then treats the
    recording as one that ends before that step. A step aborted at its approval replays
    as it is, because the recorded decision is the abort.
    """
    status = (recording.manifest.get("outcome") or {}).get("status")
    if status != str(RunStatus.ABORTED):
        return recording, None
    steps = recording.steps
    if steps:
        last = steps[-1]
        decision = last.decision or {}
        if last.outcome != str(StepOutcome.ABORTED) or decision.get("verdict") == str(
            Verdict.ABORT
        ):
            return recording, None
        steps = steps[:-1]
    unfinished = replace(recording, steps=steps, manifest={**recording.manifest, "outcome": None})
    return unfinished, len(steps) + 1


def _settings(recording: Recording) -> LoopSettings:
    data = recording.manifest.get("settings", {})
    try:
        _check_fields(LoopSettings, data)
        return LoopSettings.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise RecordingError(
            f"{recording.path / MANIFEST} contains invalid 'settings': {exc}"
        ) from exc


def _executor_spec(recording: Recording) -> ExecutorSpec:
    """Rebuild the recorded executor, which a replay must start the same way."""
    path = recording.path / MANIFEST
    data = recording.manifest.get("executor")
    if data is None:
        raise RecordingError(
            f"{path} is missing the 'executor' key, so the replay cannot tell which executor, "
            "page or MiniWoB++ task the run used; only recordings written by `agent run` can "
            "be replayed"
        )
    kind = data.get("kind")
    if kind not in EXECUTOR_KINDS:
        raise RecordingError(
            f"{path} contains executor kind {kind!r}, which replay cannot start; "
            f"it starts one of: {', '.join(EXECUTOR_KINDS)}"
        )
    task = data.get("miniwob_task")
    if task is not None and kind != "browser":
        raise RecordingError(
            f"{path} records MiniWoB++ task {task!r} on the {kind} executor, but MiniWoB++ tasks "
            "run only in the browser executor"
        )
    try:
        _check_fields(ExecutorSpec, data)
        spec = ExecutorSpec.from_dict(data)
        _check_executor_values(spec)
    except (ConfigError, TypeError, ValueError) as exc:
        raise RecordingError(f"{path} contains an invalid 'executor': {exc}") from exc
    return spec


def _check_executor_values(spec: ExecutorSpec) -> None:
    """Raise ValueError for a value the executor would reject only when it starts."""
    if spec.monitor is not None and spec.monitor < 1:
        raise ValueError(
            f"'monitor' must be 1 or more because mss numbers monitors from 1, found {spec.monitor}"
        )
    if spec.kind != "browser":
        return

    # Imported here because it loads Playwright, which a desktop replay does not need.
    from executors.browser import MAX_DEVICE_SCALE_FACTOR, MAX_VIEWPORT_SIDE

    if not all(1 <= side <= MAX_VIEWPORT_SIDE for side in spec.viewport):
        raise ValueError(
            f"'viewport' must be [width, height] in CSS pixels, each from 1 to "
            f"{MAX_VIEWPORT_SIDE}, found {_show(list(spec.viewport))}"
        )
    if not 0 < spec.device_scale_factor <= MAX_DEVICE_SCALE_FACTOR:
        raise ValueError(
            f"'device_scale_factor' must be above 0 and at most {MAX_DEVICE_SCALE_FACTOR:g}, "
            f"found {spec.device_scale_factor:g}"
        )
    if spec.browser_path is not None and not os.access(spec.browser_path, os.X_OK):
        raise ValueError(
            f"'browser_path' {spec.browser_path!r} is missing or not executable on this machine; "
            "set it to a Chromium binary, or remove it to use the system Chromium"
        )
    if spec.miniwob_task is not None:
        from agent.miniwob import task_names

        if spec.miniwob_task not in task_names():
            raise ValueError(
                f"'miniwob_task' {spec.miniwob_task!r} is not a task of the installed miniwob "
                "package; give a task page name such as 'click-button'"
            )


def _check_fields(cls: type, data: Mapping[str, Any], prefix: str = "") -> None:
    """Check that manifest values have the JSON types of the dataclass `cls` fields they fill.

    Keys that name no field are skipped, as the `from_dict` methods skip them, except in
    nested objects, whose dataclasses take no unknown keys. Raises ValueError naming the
    field (as `prefix` + its name) and the values it accepts.
    """
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        expected = hints.get(name)
        if expected is None:
            continue
        field_name = f"{prefix}{name}"
        if dataclasses.is_dataclass(expected) and isinstance(expected, type):
            if not isinstance(value, dict):
                raise ValueError(f"{field_name!r} must be an object, found {_show(value)}")
            known = typing.get_type_hints(expected)
            unknown = sorted(key for key in value if key not in known)
            if unknown:
                raise ValueError(
                    f"{field_name!r} contains the unknown key {unknown[0]!r}; "
                    f"its keys are {', '.join(known)}"
                )
            _check_fields(expected, value, f"{field_name}.")
        elif not _has_type(value, expected):
            raise ValueError(f"{field_name!r} must be {_type_text(expected)}, found {_show(value)}")


# The JSON form of each field type, in the singular and the plural.
_TYPE_TEXTS: dict[Any, tuple[str, str]] = {
    bool: ("true or false", "booleans"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    type(None): ("null", "nulls"),
}


def _has_type(value: Any, expected: Any) -> bool:
    arguments = typing.get_args(expected)
    if isinstance(expected, types.UnionType):
        return any(_has_type(value, argument) for argument in arguments)
    if typing.get_origin(expected) is tuple:
        if not isinstance(value, list):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(_has_type(item, arguments[0]) for item in value)
        return len(value) == len(arguments) and all(map(_has_type, value, arguments))
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return value in [member.value for member in expected]
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return type(value) is int
    if expected is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if expected is str or expected is type(None):
        return isinstance(value, expected)
    # A type the manifest has no JSON form for; the dataclass checks it, if at all.
    return True


def _type_text(expected: Any, plural: bool = False) -> str:
    arguments = typing.get_args(expected)
    if isinstance(expected, types.UnionType):
        return " or ".join(_type_text(argument, plural) for argument in arguments)
    if typing.get_origin(expected) is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return f"a list of {_type_text(arguments[0], plural=True)}"
        return f"a list of {len(arguments)} {_type_text(arguments[0], plural=True)}"
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return f"one of {', '.join(str(member.value) for member in expected)}"
    singular, plural_text = _TYPE_TEXTS.get(expected, (str(expected), f"{expected} values"))
    return plural_text if plural else singular


def _replay_on(
    executor: Executor,
    recording: Recording,
    record_dir: Path,
    settings: LoopSettings,
    models: Models,
    checker: StepChecker,
    secret_values: dict[str, str],
) -> RunOutcome:
    """Replay against an executor the caller started, such as a `FakeExecutor` in tests."""
    secrets = Secrets(secret_values)
    recorder = Recorder(
        record_dir, executor={"kind": getattr(executor, "name", "custom")}, secrets=secrets
    )
    loop = AgentLoop(
        models=models,
        executor=executor,
        approval=checker.approve,
        recorder=recorder,
        control=checker.control,
        settings=settings,
        secrets=secrets,
        on_event=checker.on_event,
    )
    return loop.run(recording.task)


def replay_models(recording: Recording) -> Models:
    """Build strict replay models that serve the recorded replies of each model slot."""
    names = {
        slot: entry.get("name", slot)
        for slot, entry in recording.manifest.get("models", {}).items()
    }
    instruct = ReplayModel(_replies(recording, "instruct"), name=names.get("instruct", "instruct"))
    thinking_replies = _replies(recording, "thinking")
    thinking = None
    if thinking_replies or "thinking" in names:
        thinking = ReplayModel(
            thinking_replies, name=names.get("thinking", "thinking"), thinking=True
        )
    return Models(instruct, thinking)


def _replies(recording: Recording, slot: str) -> list[ModelReply]:
    """Rebuild the recorded replies with their token usage, so token limits replay alike."""
    replies = []
    for step in recording.steps:
        for call in step.calls:
            if call.slot != slot:
                continue
            raw = call.raw.get("reply", {})
            usage = raw.get("usage", {})
            replies.append(
                ModelReply(
                    text=str(raw.get("text", "")),
                    reasoning=str(raw.get("reasoning", "")),
                    content=str(raw.get("content", "")),
                    usage=Usage(completion_tokens=int(usage.get("completion_tokens") or 0)),
                    finish_reason=str(raw.get("finish_reason", "stop")),
                )
            )
    return replies


def secrets_for_replay(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Take each recorded secret's value from the environment, or a stand-in value.

    Recordings hold placeholders only, so a replay cannot know the real value. A
    stand-in keeps the replayed actions identical; only what the page receives differs.
    """
    values = {}
    for name in manifest.get("secret_names", []):
        value = os.environ.get(name)
        if value is None:
            logger.warning(
                "secret %s is not set in the environment; the replay types a stand-in value", name
            )
            value = f"replay-stand-in-{name}"
        values[name] = value
    return values


class StepChecker:
    """Serves recorded approval decisions and compares each replayed step with the recorded one.

    For a recording that ends before its run did, it aborts the replay after the last
    recorded step, because the recording has no replies for the steps after it.
    """

    def __init__(self, recording: Recording, control: RunControl) -> None:
        self._steps = recording.steps
        self._stop_at_end = not recording.complete
        self.control = control
        self.divergence: Divergence | None = None
        # True once the replay reached the end of a recording that ends early.
        self.stopped_at_end = False
        if self._stop_at_end and not self._steps:
            self._stop_at_recording_end()

    def approve(self, request: ApprovalRequest) -> Decision:
        recorded = self._recorded(request.step)
        decision = recorded.decision if recorded else None
        if decision is None:
            self._diverge(
                Divergence(
                    request.step, "the replay asked for an approval the recording does not have"
                )
            )
            return Decision(Verdict.ABORT, source="replay")
        try:
            return _decision(decision)
        except (ValueError, InvalidReplyError) as exc:
            self._diverge(Divergence(request.step, f"the recorded approval is invalid: {exc}"))
            return Decision(Verdict.ABORT, source="replay")

    def on_event(self, event: LoopEvent) -> None:
        if isinstance(event, StepFinished) and self.divergence is None:
            difference = compare_step(self._recorded(event.record.step), event.record)
            if difference is not None:
                self._diverge(difference)
            elif self._stop_at_end and event.record.step == len(self._steps):
                self._stop_at_recording_end()

    def _recorded(self, step: int) -> RecordedStep | None:
        return self._steps[step - 1] if step <= len(self._steps) else None

    def _diverge(self, divergence: Divergence) -> None:
        if self.divergence is None:
            # Info, not warning: `agent replay` prints the divergence itself.
            logger.info("replay diverged at %s", divergence.describe())
            self.divergence = divergence
            self.control.abort()

    def _stop_at_recording_end(self) -> None:
        logger.info("replay reached step %d, the end of an unfinished recording", len(self._steps))
        self.stopped_at_end = True
        self.control.abort()


def compare_step(recorded: RecordedStep | None, replayed: StepRecord) -> Divergence | None:
    """Return how a replayed step differs from its recorded step, or None when they match."""
    step = replayed.step
    if replayed.outcome is StepOutcome.ERROR:
        return Divergence(step, f"the replayed step failed: {replayed.feedback}")
    if recorded is None:
        return Divergence(step, "the replay ran a step the recording does not have")
    raw = recorded.raw
    checks = (
        ("the proposed action differs", raw.get("proposed"), _arguments(replayed.proposed)),
        ("the action that ran differs", raw.get("action"), _arguments(replayed.action)),
        (
            "the input point differs",
            raw.get("point"),
            list(replayed.point) if replayed.point else None,
        ),
        ("the step ended differently", raw.get("outcome"), str(replayed.outcome)),
    )
    for what, expected, actual in checks:
        if _normal(expected) != _normal(actual):
            return Divergence(step, what, expected, actual)
    return None


def _leftovers(recording: Recording, models: Models, outcome: RunOutcome) -> Divergence | None:
    """Report replies or steps the replay never used, and a different final status."""
    next_step = outcome.steps + 1
    for model in (models.instruct, models.thinking):
        if isinstance(model, ReplayModel) and model.remaining:
            replies = "reply was" if model.remaining == 1 else "replies were"
            return Divergence(
                next_step, f"{model.remaining} recorded {model.name} {replies} never used"
            )
    if outcome.steps < len(recording.steps):
        return Divergence(
            next_step,
            "the replay ended before the recording did",
            len(recording.steps),
            outcome.steps,
        )
    recorded_status = (recording.manifest.get("outcome") or {}).get("status")
    if (
        recording.complete
        and recorded_status is not None
        and recorded_status != str(outcome.status)
    ):
        return Divergence(
            outcome.steps, "the run ended differently", recorded_status, str(outcome.status)
        )
    return None


def _decision(data: dict[str, Any]) -> Decision:
    action = parse_action(data["action"]) if data.get("action") else None
    return Decision(
        Verdict(data["verdict"]), action=action, hint=str(data.get("hint", "")), source="replay"
    )


def _arguments(action: Any) -> Any:
    return action.arguments() if action is not None else None


def _normal(value: Any) -> Any:
    """Normalise JSON-like values so tuples equal lists and 500.0 equals 500."""
    return json.loads(json.dumps(value))


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
