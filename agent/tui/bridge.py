"""The approval hook the TUI hands to the loop, and the hand-over between the two threads.

The loop runs in a worker thread and calls the hook there. The hook shows the request
in the UI, then blocks until the person's decision arrives from the UI thread. It wakes
every 0.1 s to check the run's `RunControl`, so an abort releases it even when the UI
never responds. The loop imports only `ApprovalRequest` and `Decision`, never this module.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.approval import ApprovalRequest, Decision, Verdict
from agent.control import RunControl

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.1


class Policy(enum.StrEnum):
    """When the person is asked: every step, only risky steps, or never (`--yes`)."""

    ALWAYS = "always"
    RISKY = "risky"
    AUTO = "auto"


@dataclass(frozen=True)
class ShownRequest:
    """A request to display. `waiting` is True while the hook blocks for the person's decision."""

    request: ApprovalRequest
    waiting: bool
    # The decision already taken when `waiting` is False.
    decision: Decision | None = None


class TuiApproval:
    """An `ApprovalHook` that requests each decision from the person through the TUI.

    `show` is called on the loop's thread and must be thread-safe; the app passes a
    function that posts a message. Every request is shown, including those a policy
    approves without asking, so the screen always follows the run.
    """

    def __init__(
        self, show: Callable[[ShownRequest], None], control: RunControl, policy: Policy
    ) -> None:
        self._show = show
        self._control = control
        self._policy = policy
        self._approve_rest = threading.Event()
        self._lock = threading.Lock()
        self._pending: ApprovalRequest | None = None
        self._answers: queue.Queue[Decision] = queue.Queue(maxsize=1)

    def __call__(self, request: ApprovalRequest) -> Decision:
        automatic = self._automatic_decision(request)
        if automatic is not None:
            self._show(ShownRequest(request, waiting=False, decision=automatic))
            return automatic
        with self._lock:
            self._pending = request
        self._show(ShownRequest(request, waiting=True))
        decision = self._wait_for_answer()
        logger.info("step %d: %s (%s)", request.step, decision.verdict, decision.source)
        return decision

    @property
    def pending(self) -> ApprovalRequest | None:
        return self._pending

    @property
    def approving_rest(self) -> bool:
        return self._approve_rest.is_set()

    def answer(self, request: ApprovalRequest, decision: Decision) -> bool:
        """Deliver the decision for `request`; return False when that request no longer waits.

        Comparing the request guards against a key press meant for an earlier step.
        """
        with self._lock:
            if self._pending is not request:
                return False
            self._pending = None
            self._answers.put_nowait(decision)
        return True

    def approve_rest(self) -> None:
        """Approve every later step that is not risky without asking."""
        self._approve_rest.set()

    def abort_pending(self) -> bool:
        """Resolve the waiting request, if any, with an ABORT decision."""
        request = self._pending
        if request is None:
            return False
        return self.answer(request, Decision(Verdict.ABORT, source="tui"))

    def _automatic_decision(self, request: ApprovalRequest) -> Decision | None:
        if self._policy is Policy.AUTO:
            return Decision.approve("policy:auto")
        if request.risk:
            return None
        if self._policy is Policy.RISKY:
            return Decision.approve("policy:risky-only")
        if self._approve_rest.is_set():
            return Decision.approve("tui:approve-rest")
        return None

    def _wait_for_answer(self) -> Decision:
        while True:
            try:
                return self._answers.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._control.aborted:
                    self._clear_pending()
                    return Decision(Verdict.ABORT, source="tui")

    def _clear_pending(self) -> None:
        with self._lock:
            self._pending = None
            # A decision that raced with the abort is dropped, so the abort wins.
            while not self._answers.empty():
                self._answers.get_nowait()
