"""The Textual app that watches one run and lets a person steer it step by step.

The run itself (model calls, executor actions, recording) happens in a thread worker,
so the screen stays responsive while a model thinks. The worker reaches the UI only by
posting messages: loop events through `on_event`, and approval requests through the
`TuiApproval` hook, which then blocks the worker until a key press delivers the decision.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Collapsible, Footer, RichLog, Static
from textual.worker import Worker, WorkerState

from agent.actions import Action, describe_action
from agent.approval import ApprovalHook, ApprovalRequest, Decision, Verdict
from agent.cli import EXIT_ABORTED, EXIT_INCOMPLETE, EXIT_USAGE
from agent.control import RunAborted, RunControl
from agent.errors import AgentError
from agent.tui.bridge import Policy, ShownRequest, TuiApproval
from agent.tui.events import apply_event
from agent.tui.logs import LogLine
from agent.tui.modals import EditScreen, HintScreen
from agent.tui.screenshot import (
    Frame,
    ScreenshotCells,
    build_graphics_widget,
    frame_for,
    show_frame,
    zoom_frame,
)
from executors.base import Observation

logger = logging.getLogger(__name__)

# The zoom key shows 1/ZOOM_FACTOR of the screenshot's width and height around the click point.
ZOOM_FACTOR = 4

# Seconds after an abort before the screen explains that it still waits for the loop to stop.
ABORT_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Finished:
    """The end of a run: the process exit code and one line for the person."""

    exit_code: int
    message: str


EventSink = Callable[[object], None]
StartRun = Callable[[ApprovalHook, RunControl, EventSink], Finished]
"""Runs the agent to the end on the calling thread; the app calls it in a worker."""


class RunState(enum.StrEnum):
    STARTING = "starting"
    WORKING = "working"
    WAITING = "waiting for approval"
    PAUSED = "paused"
    ABORTING = "aborting"
    FINISHED = "finished"


class ApprovalShown(Message):
    """The hook is showing a request, waiting for a decision or already decided by policy."""

    def __init__(self, shown: ShownRequest) -> None:
        super().__init__()
        self.shown = shown


class LoopEvent(Message):
    """One event from the loop, passed through unchanged for `apply_event`."""

    def __init__(self, event: object) -> None:
        super().__init__()
        self.event = event


_APPROVAL_ACTIONS = frozenset({"approve", "edit", "skip", "deny", "approve_rest"})
_RUNNING_ACTIONS = frozenset({"pause", "resume", "abort"})


# Below these sizes the screenshot (and, when short, the log) is hidden, so the proposed
# action and the keys still fit.
NARROW_COLUMNS = 70
SHORT_ROWS = 20


class AgentApp(App[int]):
    """Watch and steer one run. The app's return value is the run's exit code."""

    TITLE = "agent"
    CSS = """
    #task { height: auto; padding: 0 1; background: $boost; text-style: bold; }
    #status { height: 1; padding: 0 1; }
    #body { height: 1fr; }
    #screenshot { width: 3fr; height: 1fr; }
    #side { width: 2fr; height: 1fr; }
    #action { height: auto; border: round $accent; padding: 0 1; }
    #action.waiting { border: round $warning; }
    #action.risky { border: heavy $error; }
    #timings { height: auto; padding: 0 1; color: $text-muted; }
    #reasoning-box { height: 1fr; }
    #reasoning-scroll { height: auto; max-height: 100%; }
    #log { height: 6; border-top: solid $panel; border-title-color: $text-muted; overflow-y: auto; }
    /* A small terminal keeps the proposed action visible: the screenshot and log go first. */
    Screen.narrow #screenshot { display: none; }
    Screen.short #screenshot { display: none; }
    Screen.short #log { display: none; }
    Screen.short #task { height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        # Abort comes early so that a narrow terminal, which cuts the footer, still shows it.
        Binding("a", "approve", "Approve"),
        Binding("e", "edit", "Edit"),
        Binding("s", "skip", "Skip"),
        Binding("d", "deny", "Deny"),
        Binding("q", "abort", "Abort"),
        Binding("q", "close", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("A", "approve_rest", "Approve rest"),
        Binding("r", "toggle_reasoning", "Reasoning"),
        Binding("z", "toggle_zoom", "Zoom"),
        Binding("ctrl+c", "quit", "Abort", show=False),
        Binding("ctrl+q", "quit", "Abort", show=False, priority=True),
    ]

    def __init__(
        self,
        task: str,
        start: StartRun,
        *,
        policy: Policy = Policy.ALWAYS,
        graphics: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.task_text = task
        self.control = RunControl()
        self.approval = TuiApproval(self._post_shown, self.control, policy)
        self.state = RunState.STARTING
        self.step = 0
        self.finished: Finished | None = None
        self._start = start
        self._graphics = graphics
        # The clock behind "s in this step"; tests pass a fixed one for stable snapshots.
        self._clock = clock
        self._reasoning_step = -1
        self._reasoning = ""
        self._step_started = clock()
        self._paused_state = RunState.WORKING
        # The loop's current phase within a step, as its events report it.
        self._phase = ""
        self._frame: Frame | None = None
        self._zoomed = False

    # Layout and start-up.

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Task: {self.task_text}"), id="task")
        yield Static("", id="status")
        with Horizontal(id="body"):
            yield self._screenshot_widget()
            with Vertical(id="side"):
                yield Static(Text("No action proposed yet."), id="action")
                yield Static("", id="timings")
                with (
                    Collapsible(title="Reasoning", collapsed=False, id="reasoning-box"),
                    VerticalScroll(id="reasoning-scroll"),
                ):
                    yield Static("", id="reasoning")
        yield RichLog(id="log", wrap=True, markup=False, max_lines=500)
        yield Footer()

    def _screenshot_widget(self) -> Widget:
        if self._graphics:
            return build_graphics_widget(id="screenshot")
        return ScreenshotCells(id="screenshot")

    def on_resize(self, event: events.Resize) -> None:
        self._fit_layout(event.size.width, event.size.height)

    def _fit_layout(self, width: int, height: int) -> None:
        self.screen.set_class(width < NARROW_COLUMNS, "narrow")
        self.screen.set_class(height < SHORT_ROWS, "short")
        self.query_one(Footer).compact = width < NARROW_COLUMNS

    def on_mount(self) -> None:
        self._fit_layout(self.size.width, self.size.height)
        self.query_one("#action", Static).border_title = "Proposed action"
        self.query_one("#log", RichLog).border_title = "Log"
        self.set_interval(0.5, self._refresh_status)
        self._set_state(RunState.WORKING)
        self._watch_interrupts(True)
        self._run()

    def on_unmount(self) -> None:
        self._watch_interrupts(False)
        # The process cannot exit before the worker thread ends. An abort ends a loop that waits
        # for approval or sleeps within 0.1 s, and any other loop at its next checkpoint.
        self.control.abort()

    def _watch_interrupts(self, on: bool) -> None:
        """Treat SIGINT, SIGTERM and SIGHUP like Ctrl+C pressed in the app.

        Ctrl+C typed in the terminal arrives as a key, because the terminal is in raw mode.
        Handling the signals lets the app restore the terminal and finish the recording.
        """
        loop = asyncio.get_running_loop()
        try:
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                if on:
                    loop.add_signal_handler(number, self._interrupted)
                else:
                    loop.remove_signal_handler(number)
        except (RuntimeError, ValueError):
            # Signal handlers can only be set in the main thread.
            logger.debug("stop signals are not handled by the app outside the main thread")

    def _interrupted(self) -> None:
        if self.finished is None:
            self.action_abort()
        else:
            self.action_close()

    @work(thread=True, exit_on_error=False, name="agent run")
    def _run(self) -> Finished:
        try:
            return self._start(self.approval, self.control, self._post_event)
        except RunAborted:
            return Finished(EXIT_ABORTED, "The run was aborted.")
        except AgentError as exc:
            # The loop ends errors during the run itself, so these come from starting it.
            logger.error("the run could not start: %s", exc)
            return Finished(EXIT_USAGE, f"The run could not start: {exc}")

    # Messages from the worker thread. Both post functions run on the worker thread.

    def _post_shown(self, shown: ShownRequest) -> None:
        self.post_message(ApprovalShown(shown))

    def _post_event(self, event: object) -> None:
        self.post_message(LoopEvent(event))

    @on(ApprovalShown)
    def _show_request(self, message: ApprovalShown) -> None:
        shown = message.shown
        request = shown.request
        self.show_step_started(request.step, request.observation, request.action)
        if request.reasoning and self._reasoning_step != request.step:
            # No event brought this step's reasoning, so show the request's copy.
            self.show_reasoning(request.step, request.reasoning)
        self._show_action(shown)
        if shown.waiting and self.state is not RunState.ABORTING:
            self._set_state(RunState.PAUSED if self.control.paused else RunState.WAITING)
            self._paused_state = RunState.WAITING

    @on(LoopEvent)
    def _handle_loop_event(self, message: LoopEvent) -> None:
        apply_event(self, message.event)

    @on(LogLine)
    def _write_log(self, message: LogLine) -> None:
        self.query_one("#log", RichLog).write(Text(message.text, style=_log_style(message.level)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "agent run":
            return
        if event.state is WorkerState.SUCCESS:
            assert isinstance(event.worker.result, Finished)
            self._finish(event.worker.result)
        elif event.state is WorkerState.ERROR:
            error = event.worker.error
            logger.error("the run stopped with an unexpected error: %r", error, exc_info=error)
            self._finish(
                Finished(EXIT_INCOMPLETE, f"The run stopped with an unexpected error: {error!r}")
            )
        elif event.state is WorkerState.CANCELLED:
            self._finish(Finished(EXIT_ABORTED, "The run was cancelled."))

    # The view: what loop events and approval requests change on screen.

    def show_step_started(
        self, step: int, observation: Observation | None, action: Action | None = None
    ) -> None:
        """Show a new step, or a newer screenshot or action for the current one."""
        if step != self.step:
            self.step = step
            self._step_started = self._clock()
            self._phase = ""
            self.query_one("#action", Static).update(Text("Planning…"))
        if observation is not None:
            self._show_frame(frame_for(observation, action))
        self._refresh_status()

    def append_reasoning(self, step: int, text: str) -> None:
        """Append streamed reasoning text; a new step starts a fresh reasoning pane."""
        if step != self._reasoning_step:
            self._reasoning_step = step
            self._reasoning = ""
        self._reasoning += text
        self.query_one("#reasoning", Static).update(Text(self._reasoning))
        self.query_one("#reasoning-scroll", VerticalScroll).scroll_end(animate=False)

    def show_reasoning(self, step: int, text: str) -> None:
        """Replace the reasoning of `step` with its full text."""
        self._reasoning_step = step
        self._reasoning = ""
        self.append_reasoning(step, text)

    def show_phase(self, step: int, phase: str) -> None:
        """Show what the loop does now in the current step: planning, executing and so on."""
        if step == self.step:
            self._phase = phase
            self._refresh_status()

    def show_step_finished(self, step: int, outcome: str, timings: Mapping[str, float]) -> None:
        """Show how a finished step ended and how long each phase took, in seconds."""
        parts = [f"{name} {seconds:.2f} s" for name, seconds in timings.items()]
        total = sum(timings.values())
        text = f"Step {step} {outcome} in {total:.2f} s: " + " · ".join(parts)
        self.query_one("#timings", Static).update(Text(text))

    def _show_frame(self, frame: Frame) -> None:
        self._frame = frame
        shown = zoom_frame(frame, ZOOM_FACTOR) if self._zoomed else frame
        show_frame(self.query_one("#screenshot"), shown)

    def _show_action(self, shown: ShownRequest) -> None:
        request = shown.request
        lines = Text(request.description, style="bold")
        if request.instruction:
            lines.append(f"\nInstruction: {request.instruction}")
        if request.risk:
            lines.append(f"\nRisky: {request.risk}", style="bold red")
        if shown.decision is not None:
            lines.append(f"\n{_describe_decision(shown.decision)}", style="italic")
        panel = self.query_one("#action", Static)
        panel.update(lines)
        panel.set_class(shown.waiting, "waiting")
        panel.set_class(bool(request.risk), "risky")

    def _refresh_status(self) -> None:
        state = self._phase if self.state is RunState.WORKING and self._phase else self.state.value
        parts = [f"Step {self.step}" if self.step else "Starting", state]
        if self.state in (RunState.WORKING, RunState.WAITING):
            parts.append(f"{self._clock() - self._step_started:.1f} s in this step")
        if self.approval.approving_rest:
            parts.append("approving the rest (risky steps are still asked)")
        if self.finished is not None:
            parts = [self.finished.message, "press q to quit"]
        try:
            status = self.query_one("#status", Static)
        except NoMatches:
            # The interval timer can fire once more while the app closes and its widgets go.
            return
        status.update(Text(" · ".join(parts)))

    def _set_state(self, state: RunState) -> None:
        if state is not self.state:
            logger.debug("tui state %s -> %s", self.state.value, state.value)
        self.state = state
        self._refresh_status()
        self.refresh_bindings()

    # Keys.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Enable keys by state; a disabled approval key stays visible but dimmed."""
        if action in _APPROVAL_ACTIONS:
            if self.finished is not None:
                return False
            return True if self.approval.pending is not None else None
        if action in _RUNNING_ACTIONS:
            if self.finished is not None:
                return False
            # p pauses or resumes; the footer shows the one that applies now.
            if action == "pause":
                return not self.control.paused
            if action == "resume":
                return self.control.paused
            return True
        if action == "close":
            return self.finished is not None
        return True

    def action_approve(self) -> None:
        self._decide(Decision.approve("person"))

    def action_skip(self) -> None:
        self._decide(Decision(Verdict.SKIP, source="person"))

    def action_edit(self) -> None:
        request = self.approval.pending
        if request is None:
            return

        def edited(action: Action | None) -> None:
            if action is not None:
                self._decide(Decision(Verdict.EDIT, action=action, source="person"), request)

        self.push_screen(EditScreen(request), edited)

    def action_deny(self) -> None:
        request = self.approval.pending
        if request is None:
            return

        def denied(hint: str | None) -> None:
            if hint is not None:
                self._decide(Decision(Verdict.DENY, hint=hint, source="person"), request)

        self.push_screen(HintScreen(request), denied)

    def action_approve_rest(self) -> None:
        self.approval.approve_rest()
        request = self.approval.pending
        if request is not None and request.risk:
            self.notify("This step is risky: approve it on its own with a.", severity="warning")
        elif request is not None:
            self._decide(Decision.approve("tui:approve-rest"))
        self._refresh_status()

    def action_pause(self) -> None:
        if self.control.paused:
            return
        self.control.pause()
        self._paused_state = self.state
        self._set_state(RunState.PAUSED)
        logger.info("run paused by the person")

    def action_resume(self) -> None:
        if not self.control.paused:
            return
        self.control.resume()
        self._set_state(self._paused_state)
        logger.info("run resumed by the person")

    def action_toggle_zoom(self) -> None:
        self._zoomed = not self._zoomed
        if self._frame is not None:
            self._show_frame(self._frame)

    def action_toggle_reasoning(self) -> None:
        box = self.query_one("#reasoning-box", Collapsible)
        box.collapsed = not box.collapsed

    def action_abort(self) -> None:
        """Abort the run: stop the loop at its next checkpoint and resolve a waiting request."""
        if self.finished is not None or self.state is RunState.ABORTING:
            return
        logger.warning("run aborted by the person at step %d", self.step)
        self.control.abort()
        self.approval.abort_pending()
        self._set_state(RunState.ABORTING)
        self.set_timer(ABORT_GRACE_SECONDS, self._report_slow_abort)

    def action_close(self) -> None:
        if self.finished is not None:
            self.exit(self.finished.exit_code)

    async def action_quit(self) -> None:
        if self.finished is None:
            self.action_abort()
        else:
            self.action_close()

    def _decide(self, decision: Decision, request: ApprovalRequest | None = None) -> None:
        """Deliver the decision for `request` (by default the waiting one) and update the screen."""
        target = request or self.approval.pending
        if target is None or not self.approval.answer(target, decision):
            return
        self._show_action(ShownRequest(target, waiting=False, decision=decision))
        if decision.action is not None:
            self._show_frame(frame_for(target.observation, decision.action))
        self._set_state(RunState.PAUSED if self.control.paused else RunState.WORKING)
        self._paused_state = RunState.WORKING

    def _report_slow_abort(self) -> None:
        if self.finished is None:
            self.notify(
                "Waiting for the current model call or action to return…", severity="warning"
            )

    def _finish(self, finished: Finished) -> None:
        aborted = self.state is RunState.ABORTING
        if aborted and finished.exit_code != EXIT_ABORTED:
            # The person's abort sets the exit code, even when the loop ended another way meanwhile.
            finished = Finished(EXIT_ABORTED, f"Aborted. {finished.message}")
        self.finished = finished
        self._set_state(RunState.FINISHED)
        logger.info("run finished with exit code %d: %s", finished.exit_code, finished.message)
        if aborted:
            self.exit(finished.exit_code)


def _log_style(level: int) -> str:
    if level >= logging.ERROR:
        return "red"
    if level >= logging.WARNING:
        return "yellow"
    return ""


def _describe_decision(decision: Decision) -> str:
    match decision.verdict:
        case Verdict.APPROVE:
            return f"Approved ({decision.source})."
        case Verdict.EDIT:
            assert decision.action is not None
            return f"Edited to: {describe_action(decision.action)}"
        case Verdict.SKIP:
            return "Skipped."
        case Verdict.DENY:
            return f"Denied with the hint: {decision.hint}"
        case Verdict.ABORT:
            return "Aborted."
    raise AssertionError(f"unhandled verdict {decision.verdict!r}")
