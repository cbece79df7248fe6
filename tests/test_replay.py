"""Replay: recorded replies through the real loop, reporting the first divergence."""

from __future__ import annotations

import json
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
from executors.fake import FakeExecutor
from tests.loop_doubles import make_loop, screens, tool_call

RECORDINGS = sorted(
    path
    for path in (Path(__file__).resolve().parent.parent / "recordings").iterdir()
    if path.is_dir()
)
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
