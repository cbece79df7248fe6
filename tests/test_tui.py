"""The TUI driven through Textual's Pilot: every key path, the main screen, and a recorded run.

Each app test runs under `asyncio.run` with a timeout, because a Textual app that
never settles would otherwise stall the suite.
"""

from __future__ import annotations

import asyncio
import difflib
import fcntl
import html
import json
import logging
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from textual.pilot import Pilot
from textual.widgets import Collapsible, RichLog, Static

from agent.actions import LeftClick, Type, parse_action
from agent.approval import ApprovalHook, ApprovalRequest, Decision, Verdict
from agent.cli import EXIT_ABORTED
from agent.control import RunControl
from agent.deciding import Models
from agent.geometry import ScreenGeometry
from agent.loop import AgentLoop, LoopSettings
from agent.models.testing import ScriptedModel
from agent.recording import Recorder, Recording
from agent.replay import StepChecker, replay_models
from agent.runner import ExecutorSpec, RunConfig, run_agent
from agent.steps import RunOutcome, RunStatus, StepOutcome, StepRecord
from agent.tui import run_with_tui
from agent.tui.app import AgentApp, EventSink, Finished, RunState
from agent.tui.bridge import Policy
from agent.tui.edit import EditError, initial_edit_text, parse_edit
from agent.tui.events import exit_code, summarise
from agent.tui.logs import captured_logging
from agent.tui.screenshot import (
    MARK_COLOUR,
    Frame,
    ScreenshotCells,
    fit_cells,
    render_cells,
    zoom_frame,
)
from executors.base import Observation
from executors.fake import FakeExecutor

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (120, 36)


def reply(reasoning: str, **arguments: object) -> str:
    """Write a model reply in Qwen3-VL's format: reasoning, then one `computer_use` call."""
    call = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"{reasoning}</think><tool_call>{call}</tool_call>"


CLICK_SUBMIT = reply(
    "The Submit button is the blue one in the middle.", action="left_click", coordinate=[634, 538]
)
OTHER_CLICK = reply("Click the top left corner.", action="left_click", coordinate=[100, 100])
TYPE_HELLO = reply("Now type the greeting.", action="type", text="hello\n")
WAIT_30 = reply("The page is loading.", action="wait", time=30)
DONE = reply("The form is sent.", action="terminate", status="success")


def form_image() -> Image.Image:
    image = Image.new("RGB", (1280, 800), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((700, 400, 920, 460), fill=(40, 90, 200))
    return image


class MemoryRecorder:
    """Keeps the loop's step records in memory; the recording format is tested elsewhere."""

    def __init__(self) -> None:
        self.task = ""
        self.records: list[StepRecord] = []
        self.outcome: RunOutcome | None = None

    def begin(self, task: str, settings: dict[str, Any]) -> None:
        self.task = task

    def record_step(self, record: StepRecord) -> None:
        self.records.append(record)

    def finish(self, outcome: RunOutcome) -> None:
        self.outcome = outcome


@dataclass
class LoopRun:
    """Runs the real `AgentLoop` in single-model mode on scripted replies and the fake executor."""

    replies: list[str]
    executor: FakeExecutor = field(default_factory=lambda: FakeExecutor([form_image()]))
    recorder: MemoryRecorder | Recorder = field(default_factory=MemoryRecorder)
    clock: Callable[[], float] = time.monotonic

    def __call__(self, hook: ApprovalHook, control: RunControl, on_event: EventSink) -> Finished:
        loop = AgentLoop(
            models=Models(instruct=ScriptedModel(self.replies)),
            executor=self.executor,
            approval=hook,
            recorder=self.recorder,
            control=control,
            settings=LoopSettings(max_steps=len(self.replies)),
            on_event=on_event,
            clock=self.clock,
        )
        with self.executor:
            outcome = loop.run("fill the form")
        return Finished(exit_code(outcome), summarise(outcome))

    @property
    def decisions(self) -> list[Decision]:
        assert isinstance(self.recorder, MemoryRecorder)
        return [record.decision for record in self.recorder.records if record.decision is not None]


def drive(app: AgentApp, script: Callable[[Pilot[int]], Awaitable[None]]) -> None:
    """Run `script` against the app headless, then make sure the app has stopped."""

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await script(pilot)

    asyncio.run(main())


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        await pilot.pause(0.02)


async def approve_finish(pilot: Pilot[int], step: int) -> None:
    """Approve the `terminate` action of `step` and wait for the run to end."""
    app = pilot.app
    assert isinstance(app, AgentApp)
    await wait_for_request(pilot, step)
    assert "Finish the task" in static_text(app, "#action")
    await pilot.press("a")
    await until(pilot, lambda: app.finished is not None)


async def wait_for_request(pilot: Pilot[int], step: int) -> None:
    app = pilot.app
    assert isinstance(app, AgentApp)
    await until(
        pilot, lambda: app.approval.pending is not None and app.approval.pending.step == step
    )
    await pilot.pause()


def static_text(app: AgentApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


# Key paths.


@pytest.mark.timeout(30)
def test_approve_runs_action() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        assert "input point (811, 430)" in static_text(app, "#action")
        assert app.state is RunState.WAITING
        await pilot.press("a")
        await approve_finish(pilot, 2)
        assert "success" in static_text(app, "#status")
        await pilot.press("q")

    drive(app, script)
    assert [d.verdict for d in run.decisions] == [Verdict.APPROVE, Verdict.APPROVE]
    assert run.decisions[0].source == "person"
    assert run.executor.actions == [LeftClick(action="left_click", coordinate=(634, 538))]
    assert run.recorder.outcome.status is RunStatus.SUCCESS
    assert app.return_value == 0


@pytest.mark.timeout(30)
def test_runs_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR makes Textual filter every line, blank ones below the screenshot included."""
    monkeypatch.setenv("NO_COLOR", "1")
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        assert app.no_color
        await pilot.press("a")
        await approve_finish(pilot, 2)

    drive(app, script)
    assert run.recorder.outcome.status is RunStatus.SUCCESS


@pytest.mark.timeout(30)
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_signal_aborts_like_ctrl_c(number: signal.Signals) -> None:
    """SIGINT or SIGTERM sent from outside the terminal aborts the run and exits 130."""
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        os.kill(os.getpid(), number)
        await until(pilot, lambda: app.finished is not None)

    drive(app, script)
    assert app.return_value == EXIT_ABORTED
    assert run.recorder.outcome.status is RunStatus.ABORTED
    assert run.executor.actions == []


@pytest.mark.timeout(30)
def test_small_terminal_shows_action() -> None:
    """At 40x10 the screenshot and log give way, so the proposed action stays readable."""
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def main() -> None:
        async with app.run_test(size=(40, 10)) as pilot:
            await wait_for_request(pilot, 1)
            action = app.query_one("#action", Static)
            assert action.region.height >= 3
            assert "Click" in str(action.render())
            assert not app.query_one("#screenshot").display
            await pilot.press("a")
            await approve_finish(pilot, 2)

    asyncio.run(main())
    assert run.recorder.outcome.status is RunStatus.SUCCESS


@pytest.mark.timeout(30)
def test_edit_moves_click_point() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("e")
        field_ = app.screen.query_one("#edit-input")
        assert field_.value == "811, 430"
        field_.value = "100, 50"
        await pilot.press("enter")
        await approve_finish(pilot, 2)

    drive(app, script)
    decision = run.decisions[0]
    assert decision.verdict is Verdict.EDIT
    assert run.executor.actions == [decision.action]
    assert run.recorder.records[0].point == (100, 50)


@pytest.mark.timeout(30)
def test_edit_rejects_bad_input() -> None:
    run = LoopRun([TYPE_HELLO, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("e")
        field_ = app.screen.query_one("#edit-input")
        assert field_.value == "hello\\n"
        field_.value = '{"action": "type"}'
        await pilot.press("enter")
        await pilot.pause()
        assert "'text' is missing" in str(app.screen.query_one("#edit-error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.approval.pending is not None
        await pilot.press("e")
        app.screen.query_one("#edit-input").value = "bye"
        await pilot.press("enter")
        await approve_finish(pilot, 2)

    drive(app, script)
    assert run.decisions[0].verdict is Verdict.EDIT
    assert run.executor.actions == [Type(action="type", text="bye")]


@pytest.mark.timeout(30)
def test_skip_runs_nothing() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("s")
        await approve_finish(pilot, 2)

    drive(app, script)
    assert run.decisions[0].verdict is Verdict.SKIP
    assert run.recorder.records[0].outcome is StepOutcome.SKIPPED
    assert run.executor.actions == []


@pytest.mark.timeout(30)
def test_deny_sends_hint() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("d")
        await pilot.press("enter")
        await pilot.pause()
        assert app.approval.pending is not None, "an empty hint must not deny"
        await pilot.press(*"scroll first")
        await pilot.press("enter")
        await approve_finish(pilot, 2)

    drive(app, script)
    assert run.decisions[0].verdict is Verdict.DENY
    assert run.decisions[0].hint == "scroll first"
    assert "scroll first" in run.recorder.records[0].feedback
    assert run.executor.actions == []


@pytest.mark.timeout(30)
def test_approve_rest_still_asks_risky() -> None:
    terminal = FakeExecutor([form_image()], extras={"window_title": "xterm"})
    run = LoopRun([CLICK_SUBMIT, OTHER_CLICK, TYPE_HELLO, DONE], executor=terminal)
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("A")
        await wait_for_request(pilot, 3)
        assert "Risky:" in static_text(app, "#action")
        await pilot.press("a")
        await until(pilot, lambda: app.finished is not None)

    drive(app, script)
    sources = [d.source for d in run.decisions]
    assert sources == ["tui:approve-rest", "tui:approve-rest", "person", "tui:approve-rest"]
    assert run.recorder.records[2].risk
    assert len(run.executor.actions) == 3


@pytest.mark.timeout(30)
def test_pause_blocks_loop() -> None:
    run = LoopRun([CLICK_SUBMIT, TYPE_HELLO, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("p")
        assert app.control.paused
        assert app.state is RunState.PAUSED
        await pilot.pause()
        shown = {
            binding.action for _, binding, enabled, _ in app.active_bindings.values() if enabled
        }
        assert "resume" in shown
        assert "pause" not in shown
        await pilot.press("a")
        await pilot.pause(0.3)
        assert run.executor.actions == [], "a paused run must not execute"
        await pilot.press("p")
        assert not app.control.paused
        await wait_for_request(pilot, 2)
        assert len(run.executor.actions) == 1
        await pilot.press("a")
        await approve_finish(pilot, 3)

    drive(app, script)
    assert len(run.executor.actions) == 2


# Aborts took 0.06-0.5 s on two busy cores. A bound near 1 s failed on an overloaded
# machine, so the tests only catch a run that ignores the abort, well under the 30 s wait.
IGNORED_ABORT_S = 10.0


@pytest.mark.timeout(30)
def test_abort_while_waiting() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)
    timing: dict[str, float] = {}

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        timing["pressed"] = time.monotonic()
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
        timing["stopped"] = time.monotonic()

    drive(app, script)
    assert timing["stopped"] - timing["pressed"] < IGNORED_ABORT_S
    assert app.return_value == 130
    assert [d.verdict for d in run.decisions] == [Verdict.ABORT]
    assert run.recorder.outcome.status is RunStatus.ABORTED
    assert run.executor.actions == []


@pytest.mark.timeout(30)
def test_abort_during_wait_action(tmp_path: Path) -> None:
    recording_dir = tmp_path / "recording"
    run = LoopRun([WAIT_30, DONE], recorder=Recorder(recording_dir, executor={"kind": "fake"}))
    app = AgentApp("fill the form", run)
    timing: dict[str, float] = {}

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("a")
        await until(pilot, lambda: app.state is RunState.WORKING)
        await pilot.pause(0.2)
        timing["pressed"] = time.monotonic()
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running)
        timing["stopped"] = time.monotonic()

    drive(app, script)
    assert timing["stopped"] - timing["pressed"] < IGNORED_ABORT_S
    assert app.return_value == 130
    recording = Recording.open(recording_dir)
    assert recording.manifest["outcome"]["status"] == "aborted"
    assert [step.outcome for step in recording.steps] == ["aborted"]


@pytest.mark.timeout(30)
def test_auto_policy_needs_no_keys() -> None:
    run = LoopRun([CLICK_SUBMIT, TYPE_HELLO, DONE])
    app = AgentApp("fill the form", run, policy=Policy.AUTO)

    async def script(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: app.finished is not None)
        assert "Approved (policy:auto)" in static_text(app, "#action")

    drive(app, script)
    assert [d.source for d in run.decisions] == ["policy:auto"] * 3
    assert len(run.executor.actions) == 2


@pytest.mark.timeout(30)
def test_events_fill_screen() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        assert "blue one in the middle" in static_text(app, "#reasoning")
        assert "actor · scripted" in static_text(app, "#reasoning")
        await pilot.press("a")
        await wait_for_request(pilot, 2)
        timings = static_text(app, "#timings")
        assert timings.startswith("Step 1 executed in ")
        assert "execute " in timings
        assert "Step 2" in static_text(app, "#status")
        await pilot.press("a")
        await until(pilot, lambda: app.finished is not None)

    drive(app, script)


@pytest.mark.timeout(30)
def test_reasoning_collapses() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        box = app.query_one("#reasoning-box", Collapsible)
        assert not box.collapsed
        await pilot.press("r")
        assert box.collapsed
        await pilot.press("r")
        assert not box.collapsed

    drive(app, script)


@pytest.mark.timeout(30)
def test_logs_reach_log_pane(capsys: pytest.CaptureFixture[str]) -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)
    stderr_handler = logging.StreamHandler()
    logging.getLogger().addHandler(stderr_handler)
    lines: list[str] = []

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.press("a")
        await approve_finish(pilot, 2)
        await pilot.pause()
        lines.extend(str(line.text) for line in app.query_one("#log", RichLog).lines)

    try:
        with captured_logging(app, logging.INFO):
            assert stderr_handler not in logging.getLogger().handlers
            drive(app, script)
    finally:
        logging.getLogger().removeHandler(stderr_handler)
    assert any("step 1: approve (person)" in line for line in lines)
    assert "step 1: approve" not in capsys.readouterr().err


# The entry point `agent run` calls, in a real pseudo-terminal.


def run_in_terminal() -> None:
    """Run `run_with_tui` on a scripted run, as the child process of a terminal test."""
    logging.basicConfig(level=logging.WARNING)

    def run_task(hook: ApprovalHook, control: RunControl, on_event: EventSink) -> RunOutcome:
        run = LoopRun([CLICK_SUBMIT, DONE])
        loop = AgentLoop(
            models=Models(instruct=ScriptedModel(run.replies)),
            executor=run.executor,
            approval=hook,
            recorder=run.recorder,
            control=control,
            on_event=on_event,
        )
        with run.executor:
            return loop.run("fill the form")

    code = run_with_tui("fill the form", run_task, policy=Policy.AUTO)
    print(f"exit code {code}")


ESCAPE_SEQUENCE = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z]")


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """Read the terminal's output until `needle` appears, the child closes it, or time runs out.

    Returns the output with escape sequences removed, so text split by styles reads whole.
    """
    output = b""
    deadline = time.monotonic() + timeout
    while needle not in ESCAPE_SEQUENCE.sub(b"", output) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    return ESCAPE_SEQUENCE.sub(b"", output)


@pytest.mark.timeout(60)
def test_run_with_tui_in_terminal() -> None:
    pid, fd = pty.fork()
    if pid == 0:
        # The child sets the size itself, so the app reads 120x36 when it starts.
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
        # An explicit environment, because a library may have called putenv("COLUMNS") in this
        # process, and shutil.get_terminal_size prefers COLUMNS and LINES to the terminal's size.
        environment = {
            key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")
        }
        environment["TERM"] = "xterm-256color"
        # The child imports this module as `tests.test_tui`, from the repository root.
        os.chdir(Path(__file__).resolve().parent.parent)
        command = "import tests.test_tui as t; t.run_in_terminal()"
        os.execve(sys.executable, [sys.executable, "-c", command], environment)
    try:
        screen = read_until(fd, b"press q to quit", timeout=30)
        assert b"press q to quit" in screen, screen[-2000:].decode(errors="replace")
        os.write(fd, b"q")
        output = read_until(fd, b"exit code 0\r\n", timeout=10)
    finally:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished == 0:
            time.sleep(0.5)
            finished, status = os.waitpid(pid, os.WNOHANG)
        if finished == 0:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"Run ended: success after 2 steps" in output
    assert b"exit code 0" in output
    assert os.waitstatus_to_exitcode(status) == 0


# The main screen.


def screen_text(svg: str) -> list[str]:
    """The visible text of an exported screen, one entry per text run."""
    return [
        html.unescape(run) for run in re.findall(r"<text[^>]*>(.*?)</text>", svg) if run.strip()
    ]


@pytest.mark.timeout(30)
def test_main_screen_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compare the waiting screen with tests/snapshots/main_screen.svg.

    Both clocks are fixed: the loop's model and phase timings are drawn on the screen, and
    a slow machine must not change them. The colours are part of the snapshot, so NO_COLOR
    is cleared. Rerun with UPDATE_SNAPSHOTS=1 to rewrite the file after an intended change.
    """
    monkeypatch.delenv("NO_COLOR", raising=False)
    run = LoopRun([CLICK_SUBMIT, DONE], clock=lambda: 100.0)
    app = AgentApp("fill the form", run, clock=lambda: 100.0)
    svg: dict[str, str] = {}

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        await pilot.pause(0.1)
        svg["text"] = app.export_screenshot(title="agent", simplify=True)

    drive(app, script)
    snapshot = SNAPSHOTS / "main_screen.svg"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not snapshot.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(svg["text"], encoding="utf-8")
    expected = snapshot.read_text(encoding="utf-8")
    if svg["text"] != expected:
        actual = tmp_path / "main_screen.svg"
        actual.write_text(svg["text"], encoding="utf-8")
        changed = [
            line
            for line in difflib.unified_diff(
                screen_text(expected), screen_text(svg["text"]), lineterm="", n=0
            )
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
        ]
        pytest.fail(
            f"the main screen changed; the new one is {actual}. "
            f"Changed text: {changed or 'none, only colours or layout'}. "
            "Rerun with UPDATE_SNAPSHOTS=1 if the change is intended."
        )


# A checked-in MiniWoB++ recording, replayed with a person approving each step in the TUI.

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"


def miniwob_recordings() -> list[Path]:
    if not RECORDINGS.is_dir():
        return []
    return sorted(path for path in RECORDINGS.iterdir() if (path / "manifest.json").is_file())


@dataclass
class RecordedRun:
    """Replays a recording's model replies through `run_agent`, approved through the TUI.

    The executor starts as the manifest describes (MiniWoB++ task and seed in headless
    Chromium), and `StepChecker` compares every step with the recorded one.
    """

    recording: Recording
    record_dir: Path
    checker: StepChecker | None = None
    outcome: RunOutcome | None = None

    def __call__(self, hook: ApprovalHook, control: RunControl, on_event: EventSink) -> Finished:
        self.checker = StepChecker(self.recording, control)
        manifest = self.recording.manifest
        config = RunConfig(
            task=self.recording.task,
            record_dir=self.record_dir,
            executor=replace(ExecutorSpec.from_dict(manifest["executor"]), headless=True),
            settings=LoopSettings.from_dict(manifest["settings"]),
        )

        def both(event: Any) -> None:
            assert self.checker is not None
            self.checker.on_event(event)
            on_event(event)

        models = replay_models(self.recording)
        self.outcome = run_agent(config, hook, control, both, models=models)
        return Finished(exit_code(self.outcome), summarise(self.outcome))


@pytest.mark.timeout(90)
def test_miniwob_recording_reaches_reward(tmp_path: Path) -> None:
    pytest.importorskip("miniwob")
    recordings = miniwob_recordings()
    assert recordings, (
        f"no recordings under {RECORDINGS}; the loop's checked-in recordings are missing"
    )
    recording = Recording.open(recordings[0])
    verdicts = [step.decision["verdict"] for step in recording.steps if step.decision]
    run = RecordedRun(recording, tmp_path / "replayed")
    app = AgentApp(recording.task, run)

    async def script(pilot: Pilot[int]) -> None:
        for step, verdict in enumerate(verdicts, start=1):
            assert verdict == "approve", "this test only presses a; pick a recording of approvals"
            await wait_for_request(pilot, step)
            await pilot.press("a")
        await until(pilot, lambda: app.finished is not None, timeout=30)
        assert "raw reward 1" in static_text(app, "#status")
        await pilot.press("q")

    drive(app, script)
    assert run.checker is not None
    assert run.checker.divergence is None, run.checker.divergence.describe()
    assert run.outcome is not None
    assert run.outcome.evaluation["raw_reward"] == 1
    assert app.return_value == 0
    assert (
        Recording.open(tmp_path / "replayed").manifest["outcome"]["evaluation"]["raw_reward"] == 1
    )


# Pieces without an app.


def test_cells_mark_click_point() -> None:
    frame = Frame(form_image(), mark=(811.0, 430.0))
    lines = render_cells(frame, fit_size(40, 20))
    centre = [
        (x, y)
        for y, line in enumerate(lines)
        for x, segment in enumerate(line)
        if segment.text == "┼"
    ]
    assert centre == [(25, 6)]


@pytest.mark.timeout(30)
def test_graphics_widget_gets_marked_image() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run, graphics=True)
    images: list[Image.Image] = []

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        images.append(app.query_one("#screenshot").image)

    drive(app, script)
    assert images[0].size == (1280, 800)
    # A point on the vertical arm of the cross, above the click point.
    assert images[0].getpixel((811, 430 - 25)) == MARK_COLOUR


def test_zoom_keeps_mark_inside() -> None:
    zoomed = zoom_frame(Frame(form_image(), mark=(1270.0, 10.0)), 4)
    assert zoomed.image.size == (320, 200)
    assert zoomed.mark == (310.0, 10.0)
    unmarked = Frame(form_image())
    assert zoom_frame(unmarked, 4) is unmarked


@pytest.mark.timeout(30)
def test_zoom_key_crops_screenshot() -> None:
    run = LoopRun([CLICK_SUBMIT, DONE])
    app = AgentApp("fill the form", run)
    sizes: list[tuple[int, int]] = []

    async def script(pilot: Pilot[int]) -> None:
        await wait_for_request(pilot, 1)
        widget = app.query_one("#screenshot", ScreenshotCells)
        await pilot.press("z")
        sizes.append(widget.frame.image.size)
        await pilot.press("z")
        sizes.append(widget.frame.image.size)

    drive(app, script)
    assert sizes == [(320, 200), (1280, 800)]


def fit_size(width: int, height: int):
    from textual.geometry import Size

    return Size(width, height)


def test_cells_keep_aspect_ratio() -> None:
    assert fit_cells((1280, 800), fit_size(40, 20)) == (40, 25)
    assert fit_cells((1280, 800), fit_size(200, 10)) == (32, 20)


def test_cells_widget_without_frame() -> None:
    widget = ScreenshotCells()
    widget.show(None)
    assert widget.frame is None


def edit_request(arguments: dict) -> ApprovalRequest:
    observation = Observation(form_image(), ScreenGeometry(1280, 800))
    action = parse_action(arguments)
    coordinate = getattr(action, "coordinate", None)
    point = None if coordinate is None else observation.geometry.grid_to_point(*coordinate)
    return ApprovalRequest(1, "task", action, observation, point)


@pytest.mark.parametrize(
    ("arguments", "typed", "expected"),
    [
        ({"action": "type", "text": "a\n"}, "b\\n", {"action": "type", "text": "b\n"}),
        ({"action": "type", "text": "a"}, "c:\\\\dir", {"action": "type", "text": "c:\\dir"}),
        ({"action": "key", "keys": ["enter"]}, "ctrl+s", {"action": "key", "keys": ["ctrl", "s"]}),
        (
            {"action": "left_click", "coordinate": [500, 500]},
            "(1279, 0)",
            {"action": "left_click", "coordinate": [1000, 0]},
        ),
        (
            {"action": "wait", "time": 1},
            '{"action": "wait", "time": 2}',
            {"action": "wait", "time": 2},
        ),
        (
            {"action": "left_click"},
            "1279, 799",
            {"action": "left_click", "coordinate": [1000, 1000]},
        ),
    ],
)
def test_parse_edit_forms(arguments: dict, typed: str, expected: dict) -> None:
    assert parse_edit(typed, edit_request(arguments)).arguments() == expected


@pytest.mark.parametrize(
    ("arguments", "typed", "message"),
    [
        ({"action": "left_click", "coordinate": [500, 500]}, "left", "is not a point"),
        (
            {"action": "left_click", "coordinate": [500, 500]},
            "2000, 10",
            "outside the captured region",
        ),
        ({"action": "wait", "time": 1}, "3", "has no coordinate or text"),
        ({"action": "wait", "time": 1}, "{oops", "invalid JSON"),
        ({"action": "type", "text": "a"}, "   ", "the edit is empty"),
    ],
)
def test_parse_edit_errors(arguments: dict, typed: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        parse_edit(typed, edit_request(arguments))


def test_initial_edit_text_forms() -> None:
    assert initial_edit_text(edit_request({"action": "type", "text": "x\n"})) == "x\\n"
    assert (
        initial_edit_text(edit_request({"action": "left_click", "coordinate": [0, 1000]}))
        == "0, 799"
    )
    assert (
        initial_edit_text(edit_request({"action": "wait", "time": 1}))
        == '{"action": "wait", "time": 1}'
    )
