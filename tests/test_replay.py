"""Replay: recorded replies through the real loop, reporting the first divergence."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.actions import LeftClick
from agent.approval import AlwaysAsk, ApprovalRequest, Decision, Verdict
from agent.cli import main
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
    assert "never used" in result.divergence.what


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
        ({**ExecutorSpec().as_dict(), "viewport": 1280}, "contains an invalid 'executor'"),
    ],
    ids=["missing", "no-kind", "unknown-kind", "miniwob-on-desktop", "bad-viewport"],
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


def test_replay_rejects_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _record(tmp_path / "rec", [CLICK, DONE])
    _edit_manifest(directory, settings={"mode": "fast"}, executor=ExecutorSpec().as_dict())
    monkeypatch.setattr("agent.replay.run_agent", _fail_if_started)

    code = main(["replay", str(directory)])

    err = capsys.readouterr().err
    assert code == 2
    assert "manifest.json contains invalid 'settings'" in err
    assert "'fast' is not a valid Mode" in err
