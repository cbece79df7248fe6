"""Recordings: what a run writes, reading it back, durability after a kill, secrets."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from agent import recording as recording_module
from agent.actions import LeftClick
from agent.approval import AlwaysAsk, ApprovalRequest, Decision, Verdict
from agent.cli import main
from agent.errors import RecordingError
from agent.loop import LoopSettings
from agent.models.testing import ScriptedModel
from agent.recording import FORMAT_NAME, ModelFiles, Recorder, Recording
from agent.runner import ExecutorSpec
from agent.safety import Secrets
from agent.steps import RunFinished, RunOutcome, RunStatus, StepRecord
from executors.fake import FakeExecutor
from tests.loop_doubles import make_loop, screens, tool_call

CLICK = tool_call("Action: click.", action="left_click", coordinate=[500, 500])
DONE = tool_call(action="terminate", status="success")
REPO = Path(__file__).resolve().parent.parent


def _record(directory: Path, replies: list[str], **options: Any) -> RunOutcome:
    recorder = Recorder(directory, executor={"kind": "fake"}, secrets=options.pop("secrets", None))
    loop = make_loop(
        ScriptedModel(replies), FakeExecutor(screens(10)), recorder=recorder, **options
    )
    return loop.run("click the middle")


def test_recording_round_trip(tmp_path: Path) -> None:
    outcome = _record(tmp_path / "rec", [CLICK, "oops", CLICK, DONE])

    recording = Recording.open(tmp_path / "rec")

    assert recording.manifest["format"] == FORMAT_NAME
    assert recording.task == "click the middle"
    assert recording.manifest["outcome"]["status"] == "success"
    assert recording.manifest["screen"] == {
        "width": 320,
        "height": 200,
        "scale": 1.0,
        "origin_x": 0.0,
        "origin_y": 0.0,
    }
    assert recording.manifest["settings"]["max_steps"] == LoopSettings().max_steps
    assert recording.manifest["versions"]["python"]
    assert len(recording.steps) == outcome.steps == 3
    assert all(step.screenshot.is_file() for step in recording.steps)
    assert not recording.truncated


def test_step_holds_everything(tmp_path: Path) -> None:
    _record(tmp_path / "rec", [CLICK, DONE])

    step = Recording.open(tmp_path / "rec").steps[0]
    raw = step.raw

    assert step.action == LeftClick(action="left_click", coordinate=(500, 500))
    assert step.point == (160, 100)
    assert raw["proposed"] == {"action": "left_click", "coordinate": [500, 500]}
    assert raw["approval"] == {
        "verdict": "approve",
        "source": "policy:auto",
        "hint": "",
        "action": None,
    }
    assert raw["result"]["ok"] is True
    assert raw["decider"] == "instruct"
    assert raw["outcome"] == "executed"
    assert set(raw["timings"]) >= {"observe", "model", "parse", "approval", "execute"}
    call = raw["calls"][0]
    assert call["reply"]["text"] == CLICK
    assert call["role"] == "actor"
    assert call["prompt"][0]["role"] == "system"
    assert {"type": "image", "path": "screenshots/step-0001.png"} in call["prompt"][1]["content"]


def test_prompt_images_reference_screenshots(tmp_path: Path) -> None:
    _record(tmp_path / "rec", [CLICK, CLICK, CLICK, DONE])

    recording = Recording.open(tmp_path / "rec")
    last_prompt = recording.steps[-1].raw["calls"][0]["prompt"]
    paths = [
        part["path"]
        for message in last_prompt
        for part in message["content"]
        if part["type"] == "image"
    ]

    assert paths == [f"screenshots/step-000{step}.png" for step in range(1, 5)]
    assert all((recording.path / path).is_file() for path in paths)


def test_edit_decision_recorded(tmp_path: Path) -> None:
    edited = LeftClick(action="left_click", coordinate=(10, 20))

    def ask(request: ApprovalRequest) -> Decision:
        if request.step == 1:
            return Decision(Verdict.EDIT, action=edited, source="person")
        return Decision.approve("person")

    _record(tmp_path / "rec", [CLICK, DONE], approval=AlwaysAsk(ask))

    raw = Recording.open(tmp_path / "rec").steps[0].raw
    assert raw["approval"]["verdict"] == "edit"
    assert raw["approval"]["action"] == {"action": "left_click", "coordinate": [10, 20]}
    assert raw["action"] == {"action": "left_click", "coordinate": [10, 20]}


def test_secret_never_written(tmp_path: Path) -> None:
    secret = "correct-horse-battery"
    secrets = Secrets({"PASSWORD": secret})
    replies = [tool_call(action="type", text="{{secret:PASSWORD}}"), DONE]

    _record(tmp_path / "rec", replies, secrets=secrets)

    for path in (tmp_path / "rec").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    manifest = Recording.open(tmp_path / "rec").manifest
    assert manifest["secret_names"] == ["PASSWORD"]


def test_short_secret_keeps_file_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A secret that is an ordinary word ("step") does not break the screenshot references."""
    secrets = Secrets({"WORD": "step"})
    replies = [tool_call(action="type", text="the step"), DONE]

    _record(tmp_path / "rec", replies, secrets=secrets)

    recording = Recording.open(tmp_path / "rec")
    assert all(step.screenshot.is_file() for step in recording.steps)
    assert recording.steps[0].raw["action"]["text"] == "the {{secret:WORD}}"
    assert recording.steps[0].raw["outcome"] == "executed"
    assert "secret WORD has only 4 characters" in caplog.text


def test_existing_recording_rejected(tmp_path: Path) -> None:
    _record(tmp_path / "rec", [DONE])

    with pytest.raises(RecordingError, match="already contains a recording"):
        _record(tmp_path / "rec", [DONE])


def test_model_hashes_in_manifest(tmp_path: Path) -> None:
    model_file = tmp_path / "model.gguf"
    mmproj_file = tmp_path / "mmproj.gguf"
    model_file.write_bytes(b"model weights")
    mmproj_file.write_bytes(b"projector weights")
    cache = tmp_path / "hashes.json"
    recorder = Recorder(
        tmp_path / "rec",
        models={"instruct": ModelFiles("tiny", model_file, mmproj_file)},
        hash_cache=cache,
    )

    make_loop(ScriptedModel([DONE]), recorder=recorder).run("t")

    entry = Recording.open(tmp_path / "rec").manifest["models"]["instruct"]
    assert entry["sha256"] == hashlib.sha256(b"model weights").hexdigest()
    assert entry["mmproj_sha256"] == hashlib.sha256(b"projector weights").hexdigest()
    assert entry["size"] == len(b"model weights")
    assert str(model_file.resolve()) in json.loads(cache.read_text())


def test_truncated_last_line_ignored(tmp_path: Path) -> None:
    _record(tmp_path / "rec", [CLICK, CLICK, DONE])
    with open(tmp_path / "rec" / "steps.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": 4, "outco')

    recording = Recording.open(tmp_path / "rec")

    assert len(recording.steps) == 3
    assert recording.truncated


def test_open_rejects_non_recordings(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"manifest\.json is missing"):
        Recording.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT_NAME, "version": 99}))
    with pytest.raises(RecordingError, match="format version 99"):
        Recording.open(tmp_path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "recording {path} not found"),
        ("file", "{path} is a file, not a recording directory"),
        ("empty-folder", "{path} is not a recording: manifest.json is missing"),
    ],
)
def test_open_rejects_non_recording_paths(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    message: str,
) -> None:
    """The reader, `agent report` and `agent replay` give the same message for each path."""
    path = tmp_path / "page.html"
    if kind == "file":
        path.write_text("<html></html>")
    elif kind == "empty-folder":
        path.mkdir()
    expected = message.format(path=path) + "; give a recording directory that `agent run` wrote"

    with pytest.raises(RecordingError) as raised:
        Recording.open(path)
    assert str(raised.value) == expected

    monkeypatch.setattr("agent.replay.run_agent", _fail_if_started)
    for command in ("report", "replay"):
        code = main([command, str(path)])
        err = capsys.readouterr().err
        assert code == 2, f"agent {command}: {err}"
        assert err == f"error: {expected}\n", f"agent {command}"


def test_open_rejects_corrupt_middle_line(tmp_path: Path) -> None:
    _record(tmp_path / "rec", [CLICK, CLICK, DONE])
    path = tmp_path / "rec" / "steps.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = "{not json"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(RecordingError, match="line 2 is not valid JSON"):
        Recording.open(tmp_path / "rec")


# Changes to step 2 of a valid recording, and the message the reader must give.
CORRUPT_STEPS: dict[str, tuple[object, str]] = {
    "not-an-object": ([1, 2, 3], "line 2 is not a step: expected a JSON object, found [1, 2, 3]"),
    "step-not-int": ({"step": "2"}, 'line 2 contains step "2" where step 2 belongs'),
    "step-bool": ({"step": True}, "line 2 contains step true where step 2 belongs"),
    "point-text": ({"point": "abc"}, "line 2: 'point' must be null or [x, y] with two numbers"),
    "point-short": ({"point": [1]}, "line 2: 'point' must be null or [x, y]"),
    "point-nested": ({"point": [[1], 2]}, "line 2: 'point' must be null or [x, y]"),
    "screenshot-number": ({"screenshot": 5}, "line 2: 'screenshot' must be a path"),
    "screenshot-outside": (
        {"screenshot": "../../etc/passwd"},
        "line 2: 'screenshot' '../../etc/passwd' points outside the recording",
    ),
    "screenshot-absolute": ({"screenshot": "/etc/passwd"}, "points outside the recording"),
    "outcome-number": ({"outcome": 5}, "line 2: 'outcome' must be a string, found 5"),
    "calls-object": ({"calls": {}}, "line 2: 'calls' must be a list, found {}"),
    "call-number": ({"calls": [5]}, "line 2, call 1: expected a JSON object, found 5"),
    "call-slot": ({"calls": [{"slot": 1}]}, "line 2, call 1: 'slot' must be a string"),
    "call-seconds": ({"calls": [{"seconds": "x"}]}, "line 2, call 1: 'seconds' must be a number"),
    "reply-text": ({"calls": [{"reply": "hi"}]}, "line 2, call 1: 'reply' must be an object"),
    "reply-usage": (
        {"calls": [{"reply": {"usage": {"completion_tokens": "many"}}}]},
        "line 2, call 1: reply 'usage' must map names to token counts",
    ),
    "action-unknown": ({"action": {"action": "fly"}}, "line 2 contains an invalid action"),
    "action-text": ({"action": "click"}, "line 2 contains an invalid action"),
    "approval-text": ({"approval": "yes"}, "line 2: 'approval' must be null or an object"),
    "approval-no-verdict": ({"approval": {}}, "line 2: approval 'verdict' must be one of"),
    "approval-action": (
        {"approval": {"verdict": "edit", "action": {"action": "fly"}}},
        "line 2 contains an invalid approval action",
    ),
    "timings-text": ({"timings": {"model": "slow"}}, "line 2: 'timings' must map phases"),
}
# Changes to the manifest, and the message the reader must give.
CORRUPT_MANIFESTS: dict[str, tuple[dict[str, object], str]] = {
    "outcome-list": ({"outcome": [1]}, "'outcome' must be an object or null, found [1]"),
    "settings-text": ({"settings": "fast"}, "'settings' must be an object"),
    "models-entry": ({"models": {"instruct": 3}}, "models 'instruct' must be an object"),
    "secret-names": ({"secret_names": [1]}, "'secret_names' must be a list of strings"),
    "task-number": ({"task": 5}, "'task' must be a string"),
}


@pytest.fixture(scope="module")
def valid_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step recording whose manifest names a browser, as `agent run` writes it."""
    directory = tmp_path_factory.mktemp("valid") / "rec"
    _record(directory, [CLICK, CLICK, DONE])
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["executor"] = ExecutorSpec().as_dict()
    manifest_path.write_text(json.dumps(manifest))
    return directory


def _corrupt_copy(valid: Path, target: Path, step: object = None, manifest: object = None) -> Path:
    """Copy a recording, then replace or update step 2 and update the manifest."""
    shutil.copytree(valid, target)
    if step is not None:
        path = target / "steps.jsonl"
        lines = path.read_text().splitlines()
        if isinstance(step, dict):
            lines[1] = json.dumps({**json.loads(lines[1]), **step})
        else:
            lines[1] = json.dumps(step)
        path.write_text("".join(line + "\n" for line in lines))
    if isinstance(manifest, dict):
        path = target / "manifest.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **manifest}))
    return target


def _check_rejected(
    directory: Path,
    message: str,
    file_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Check that the reader, `agent report` and `agent replay` all reject the recording."""
    with pytest.raises(RecordingError) as raised:
        Recording.open(directory)
    assert message in str(raised.value)
    assert str(directory / file_name) in str(raised.value)

    monkeypatch.setattr("agent.replay.run_agent", _fail_if_started)
    for command in ("report", "replay"):
        code = main([command, str(directory)])
        err = capsys.readouterr().err
        assert code == 2, f"agent {command}: {err}"
        assert message in err, f"agent {command}"
        assert "Traceback" not in err, f"agent {command}"


def _fail_if_started(*args: object, **kwargs: object) -> None:
    raise AssertionError("agent replay started an executor for a corrupt recording")


@pytest.mark.parametrize("name", list(CORRUPT_STEPS))
def test_corrupt_step_rejected(
    name: str,
    valid_recording: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    change, message = CORRUPT_STEPS[name]
    directory = _corrupt_copy(valid_recording, tmp_path / "rec", step=change)

    _check_rejected(directory, message, "steps.jsonl", capsys, monkeypatch)


@pytest.mark.parametrize("name", list(CORRUPT_MANIFESTS))
def test_corrupt_manifest_rejected(
    name: str,
    valid_recording: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    change, message = CORRUPT_MANIFESTS[name]
    directory = _corrupt_copy(valid_recording, tmp_path / "rec", manifest=change)

    _check_rejected(directory, message, "manifest.json", capsys, monkeypatch)


def test_valid_copy_accepted(valid_recording: Path, tmp_path: Path) -> None:
    """The corrupt-recording cases start from a recording that the reader accepts."""
    directory = _corrupt_copy(valid_recording, tmp_path / "rec", step={"point": [3, 4]})

    recording = Recording.open(directory)

    assert recording.steps[1].point == (3, 4)
    assert recording.complete


def test_record_step_does_not_wait_for_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow disk writes happen on the writer thread, not in the loop's call."""
    real_write = recording_module._write_png

    def slow_write(image: Image.Image, path: Path) -> None:
        time.sleep(0.3)
        real_write(image, path)

    monkeypatch.setattr(recording_module, "_write_png", slow_write)
    durations: list[float] = []
    recorder = Recorder(tmp_path / "rec")
    original = recorder.record_step

    def timed(record: StepRecord) -> None:
        started = time.perf_counter()
        original(record)
        durations.append(time.perf_counter() - started)

    recorder.record_step = timed  # type: ignore[method-assign]
    make_loop(ScriptedModel([CLICK, CLICK, DONE]), recorder=recorder).run("t")

    assert len(durations) == 3
    assert max(durations) < 0.1
    assert len(Recording.open(tmp_path / "rec").steps) == 3


_KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from agent.models.testing import ScriptedModel
    from agent.loop import LoopSettings
    from agent.recording import Recorder
    from executors.base import ExecutionResult
    from executors.fake import FakeExecutor
    from tests.loop_doubles import make_loop, screens, tool_call

    def slow(action):
        time.sleep(0.15)
        return ExecutionResult.done()

    click = tool_call(action="left_click", coordinate=[500, 500])
    loop = make_loop(
        ScriptedModel(lambda request: click),
        FakeExecutor(screens(500), results=slow),
        recorder=Recorder(sys.argv[1]),
        settings=LoopSettings(max_steps=400),
    )
    loop.run("click forever")
    """
)


def test_killed_run_leaves_valid_recording(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(directory)], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 30
        steps_file = directory / "steps.jsonl"
        while time.monotonic() < deadline:
            if steps_file.exists() and steps_file.read_bytes().count(b"\n") >= 3:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=10)

    recording = Recording.open(directory)

    assert process.returncode == -signal.SIGKILL
    assert len(recording.steps) >= 3
    assert [step.step for step in recording.steps] == list(range(1, len(recording.steps) + 1))
    assert all(step.screenshot.is_file() for step in recording.steps)
    assert not recording.finished
    assert recording.manifest["outcome"] is None


def test_outcome_status_written(tmp_path: Path) -> None:
    outcome = _record(tmp_path / "rec", [CLICK, CLICK], settings=LoopSettings(max_steps=2))

    manifest = Recording.open(tmp_path / "rec").manifest

    assert outcome.status is RunStatus.STEP_LIMIT
    assert manifest["outcome"]["status"] == "step_limit"
    assert manifest["finished_at"]


def test_failed_write_still_records_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(image: object, path: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recording_module, "_write_png", disk_full)
    directory = tmp_path / "rec"
    events: list[object] = []
    loop = make_loop(
        ScriptedModel(
            [tool_call(action="left_click", coordinate=[index, 5]) for index in range(1, 9)]
        ),
        FakeExecutor(screens(10)),
        recorder=Recorder(directory),
        settings=LoopSettings(max_steps=4),
        events=events.append,
    )

    outcome = loop.run("click")

    # The failure surfaces at the next step, or only when the recording is finished, so the
    # run ends with an error or at its step limit. Either way it returns, and says how it ended.
    assert outcome.status in (RunStatus.ERROR, RunStatus.STEP_LIMIT)
    assert any(isinstance(event, RunFinished) for event in events)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["outcome"]["status"] == outcome.status.value


def test_ctrl_c_recorded_as_aborted(tmp_path: Path) -> None:
    def interrupt(request: object) -> str:
        raise KeyboardInterrupt

    directory = tmp_path / "rec"
    loop = make_loop(
        ScriptedModel(interrupt), FakeExecutor(screens(3)), recorder=Recorder(directory)
    )

    with pytest.raises(KeyboardInterrupt):
        loop.run("click")

    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["outcome"]["status"] == "aborted"
