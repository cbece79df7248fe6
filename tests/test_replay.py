"""Replay: recorded replies through the real loop, reporting the first divergence."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.actions import LeftClick
from agent.approval import AlwaysAsk, ApprovalRequest, Decision, Verdict
from agent.cli import main
from agent.commands.replay import print_result
from agent.control import RunControl
from agent.loop import LoopSettings
from agent.models.testing import ScriptedModel
from agent.recording import Recorder, Recording
from agent.replay import ReplayResult, replay_recording
from agent.runner import ExecutorSpec
from executors.fake import FakeExecutor
from tests.loop_doubles import make_loop, screens, tool_call

RECORDINGS_DIR = Path(__file__).resolve().parent.parent / "recordings"
RECORDINGS = sorted(path for path in RECORDINGS_DIR.iterdir() if path.is_dir())
CLICK = tool_call("Action: click.", action="left_click", coordinate=[500, 500])
OTHER = tool_call(action="left_click", coordinate=[250, 750])
DONE = tool_call(action="terminate", status="success")


def _record(directory: Path, replies: list[str], **options: Any) -> Path:
    recorder = Recorder(directory, executor={"kind": "fake"})
    make_loop(ScriptedModel(replies), FakeExecutor(screens(10)), recorder=recorder, **options).run(
        "t"
    )
    return directory


def _edit_step(directory: Path, step: int, **changes: object) -> None:
    path = directory / "steps.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[step - 1].update(changes)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def _keep_lines(directory: Path, count: int, cut_off: str = "") -> None:
    """Keep the first `count` step lines, then `cut_off` as a last line without a newline."""
    path = directory / "steps.jsonl"
    lines = path.read_text().splitlines()[:count]
    path.write_text("".join(line + "\n" for line in lines) + cut_off)


def _replay(directory: Path, tmp_path: Path) -> ReplayResult:
    return replay_recording(
        Recording.open(directory),
        record_dir=tmp_path / "replayed",
        executor=FakeExecutor(screens(10)),
    )


def test_checked_in_recordings_exist() -> None:
    assert len(RECORDINGS) >= 3
    for directory in RECORDINGS:
        manifest = Recording.open(directory).manifest
        assert "hand-written replies" in manifest["labels"]
        assert manifest["executor"]["miniwob_task"]
        assert manifest["outcome"]["evaluation"]["raw_reward"] == 1


@pytest.mark.parametrize("directory", RECORDINGS, ids=[path.name for path in RECORDINGS])
def test_recording_replays_to_reward_one(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["replay", str(directory)])

    output = capsys.readouterr().out
    assert code == 0, output
    assert "Replay matched all" in output
    assert "MiniWoB++ raw reward: 1" in output


def test_faithful_replay_matches(tmp_path: Path) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])

    result = _replay(directory, tmp_path)

    assert result.matched, result.divergence
    assert result.outcome.steps == 3
    assert len(Recording.open(result.record_dir).steps) == 3


def test_changed_point_diverges(tmp_path: Path) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])
    _edit_step(directory, 2, point=[1, 1])

    result = _replay(directory, tmp_path)

    assert result.divergence is not None
    assert result.divergence.step == 2
    assert result.divergence.what == "the input point differs"
    assert result.divergence.expected == [1, 1]


def test_changed_action_diverges(tmp_path: Path) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])
    _edit_step(directory, 1, proposed={"action": "left_click", "coordinate": [1, 2]})

    result = _replay(directory, tmp_path)

    assert result.divergence is not None
    assert result.divergence.step == 1
    assert result.divergence.what == "the proposed action differs"


def test_missing_reply_diverges(tmp_path: Path) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])
    path = directory / "steps.jsonl"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:2]))

    result = _replay(directory, tmp_path)

    assert result.divergence is not None
    assert result.divergence.step == 3
    assert "diverged from the recording" in result.divergence.what


def test_leftover_replies_diverge(tmp_path: Path) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, CLICK], settings=LoopSettings(max_steps=3))
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["settings"]["max_steps"] = 2
    manifest_path.write_text(json.dumps(manifest))

    result = _replay(directory, tmp_path)

    assert result.divergence is not None
    assert result.divergence.step == 3
    assert result.divergence.what == "1 recorded instruct reply was never used"


def test_recorded_edit_replays(tmp_path: Path) -> None:
    edited = LeftClick(action="left_click", coordinate=(10, 20))

    def ask(request: ApprovalRequest) -> Decision:
        if request.step == 1:
            return Decision(Verdict.EDIT, action=edited, source="person")
        return Decision.approve("person")

    directory = _record(tmp_path / "rec", [CLICK, DONE], approval=AlwaysAsk(ask))
    executor = FakeExecutor(screens(10))

    result = replay_recording(
        Recording.open(directory), record_dir=tmp_path / "replayed", executor=executor
    )

    assert result.matched, result.divergence
    assert executor.actions == [edited]


def test_replay_command_rejects_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["replay", str(tmp_path / "nothing")])

    assert code == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("finished", "cut_off", "reason"),
    [
        (False, "", "the original run did not finish"),
        (False, '{"step": 3, "outco', "the original run did not finish"),
        (True, '{"step": 3, "outco', "its last step line was cut off"),
    ],
    ids=["killed", "killed-mid-line", "cut-off-line"],
)
def test_unfinished_recording_matches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, finished: bool, cut_off: str, reason: str
) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])
    _keep_lines(directory, 2, cut_off)
    if not finished:
        _edit_manifest(directory, outcome=None, finished_at=None)

    result = _replay(directory, tmp_path)

    assert result.matched, result.divergence
    assert result.unfinished_reason == reason
    assert result.outcome.steps == 2
    assert "diverged" not in caplog.text


def test_unfinished_recording_without_steps(tmp_path: Path) -> None:
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])
    _keep_lines(directory, 0)
    _edit_manifest(directory, outcome=None)

    result = _replay(directory, tmp_path)

    assert result.matched, result.divergence
    assert result.outcome.steps == 0
    assert result.unfinished_reason == "the original run did not finish"


def test_abort_during_wait_replays_earlier_steps(tmp_path: Path) -> None:
    """A run aborted during a wait replays the steps before it, because the wait would now run in full."""
    control = RunControl()
    timer = threading.Timer(0.3, control.abort)
    timer.start()
    wait = tool_call(action="wait", time=30)
    directory = _record(tmp_path / "rec", [CLICK, wait, DONE], control=control)
    assert [step.outcome for step in Recording.open(directory).steps] == ["executed", "aborted"]

    result = _replay(directory, tmp_path)

    assert result.matched, result.divergence
    assert result.outcome.steps == 1
    assert result.unfinished_reason == "the original run was aborted during step 2"


def test_abort_before_first_step_replays(tmp_path: Path) -> None:
    control = RunControl()
    control.abort()
    directory = _record(tmp_path / "rec", [CLICK, DONE], control=control)

    result = _replay(directory, tmp_path)

    assert result.matched, result.divergence
    assert result.outcome.steps == 0
    assert result.unfinished_reason == "the original run was aborted during step 1"


def test_unfinished_miniwob_replay_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A MiniWoB++ run killed after step 3 of 6 replays its 3 steps in a real browser."""
    directory = tmp_path / "rec"
    shutil.copytree(RECORDINGS_DIR / "click-checkboxes-seed3", directory)
    _keep_lines(directory, 3)
    _edit_manifest(directory, outcome=None, finished_at=None)

    code = main(["replay", str(directory)])

    captured = capsys.readouterr()
    assert code == 0, captured
    assert (
        "Replay matched all 3 recorded steps; the recording ends there because the "
        "original run did not finish." in captured.out
    )
    assert "diverged" not in captured.out + captured.err + caplog.text


def test_divergence_not_logged_as_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`agent replay` prints the divergence, so the log must not repeat it at warning level."""
    directory = _record(tmp_path / "rec", [CLICK, OTHER, DONE])
    _edit_step(directory, 2, point=[1, 1])

    with caplog.at_level(logging.WARNING):
        result = _replay(directory, tmp_path)

    assert result.divergence is not None
    assert "diverged" not in caplog.text


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        (None, "is missing the 'executor' key"),
        ({"url": "about:blank"}, "executor kind None, which replay cannot start"),
        ({"kind": "fake"}, "executor kind 'fake', which replay cannot start"),
        (
            {**ExecutorSpec().as_dict(), "kind": "desktop", "miniwob_task": "click-button"},
            "MiniWoB++ tasks run only in the browser executor",
        ),
        (
            {**ExecutorSpec().as_dict(), "viewport": 1280},
            "contains an invalid 'executor': 'viewport' must be a list of 2 integers, found 1280",
        ),
        (
            {**ExecutorSpec().as_dict(), "viewport": [100000, 100000]},
            "contains an invalid 'executor': 'viewport' must be [width, height] in CSS pixels, "
            "each from 1 to 8192, found [100000, 100000]",
        ),
        (
            {**ExecutorSpec().as_dict(), "device_scale_factor": 0},
            "'device_scale_factor' must be above 0 and at most 4, found 0",
        ),
        (
            {**ExecutorSpec().as_dict(), "browser_path": "/nonexistent/chromium"},
            "'browser_path' '/nonexistent/chromium' is missing or not executable on this machine",
        ),
        (
            {**ExecutorSpec().as_dict(), "miniwob_task": "no-such-task"},
            "'miniwob_task' 'no-such-task' is not a task of the installed miniwob package",
        ),
        (
            {**ExecutorSpec().as_dict(), "allowed_urls": "*"},
            "'allowed_urls' must be a list of strings, found \"*\"",
        ),
        (
            {**ExecutorSpec().as_dict(), "headless": "yes"},
            "'headless' must be true or false, found \"yes\"",
        ),
        (
            {**ExecutorSpec().as_dict(), "kind": "desktop", "monitor": 0},
            "'monitor' must be 1 or more because mss numbers monitors from 1, found 0",
        ),
    ],
    ids=[
        "missing",
        "no-kind",
        "unknown-kind",
        "miniwob-on-desktop",
        "viewport-number",
        "viewport-too-large",
        "scale-zero",
        "browser-path-missing",
        "miniwob-task-unknown",
        "allowed-urls-text",
        "headless-text",
        "monitor-zero",
    ],
)
def test_replay_rejects_bad_executor(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    executor: dict[str, Any] | None,
    message: str,
) -> None:
    directory = _record(tmp_path / "rec", [CLICK, DONE])
    manifest = json.loads((directory / "manifest.json").read_text())
    if executor is None:
        del manifest["executor"]
    else:
        manifest["executor"] = executor
    (directory / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr("agent.replay.run_agent", _fail_if_started)

    code = main(["replay", str(directory)])

    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "manifest.json" in err
    assert "--executor" not in err


def _fail_if_started(*args: object, **kwargs: object) -> None:
    raise AssertionError("the replay started an executor for an invalid recording")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "fast"}, "'mode' must be one of single, two-model, escalating, found \"fast\""),
        ({"max_steps": "30"}, "'max_steps' must be an integer, found \"30\""),
        ({"max_steps": True}, "'max_steps' must be an integer, found true"),
        ({"max_steps": 0}, "max steps 0 is invalid; use 1 or more"),
        ({"max_seconds": "1m"}, "'max_seconds' must be a number or null, found \"1m\""),
        ({"environment": None}, "'environment' must be a string, found null"),
        ({"history": {"images": "4"}}, "'history.images' must be an integer, found \"4\""),
        (
            {"history": {"pictures": 4}},
            "'history' contains the unknown key 'pictures'; its keys are images, drop_chunk, "
            "max_summaries",
        ),
        ({"history": {"images": 0}}, "history images 0 is invalid"),
        ({"calls": 5}, "'calls' must be an object, found 5"),
        (
            {"calls": {"seed": 1.5}},
            "'calls.seed' must be an integer or null, found 1.5",
        ),
    ],
    ids=[
        "mode-unknown",
        "steps-text",
        "steps-bool",
        "steps-zero",
        "seconds-text",
        "environment-null",
        "history-images-text",
        "history-unknown-key",
        "history-images-zero",
        "calls-number",
        "calls-seed-float",
    ],
)
def test_replay_rejects_bad_settings(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any],
    message: str,
) -> None:
    directory = _record(tmp_path / "rec", [CLICK, DONE])
    _edit_manifest(directory, settings=settings, executor=ExecutorSpec().as_dict())
    monkeypatch.setattr("agent.replay.run_agent", _fail_if_started)

    code = main(["replay", str(directory)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{directory / 'manifest.json'} contains invalid 'settings': {message}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("replies", "kept_lines", "expected"),
    [
        ([DONE], None, "Replay matched the 1 recorded step; the run ended with success."),
        (
            [CLICK, DONE],
            0,
            "Replay matched the recording, which has no steps; the recording ends there "
            "because the original run did not finish.",
        ),
        ([CLICK, DONE], None, "Replay matched all 2 recorded steps; the run ended with success."),
    ],
    ids=["one-step", "no-steps", "two-steps"],
)
def test_result_counts_steps(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    replies: list[str],
    kept_lines: int | None,
    expected: str,
) -> None:
    directory = _record(tmp_path / "rec", replies)
    if kept_lines is not None:
        _keep_lines(directory, kept_lines)
        _edit_manifest(directory, outcome=None)

    print_result(_replay(directory, tmp_path), keep=False)

    assert capsys.readouterr().out == expected + "\n"
