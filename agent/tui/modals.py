"""The two dialogs of the approval screen: edit the action, and deny with a hint.

Each is a `ModalScreen` dismissed from its own input handler; the app receives the
result through the callback it passed to `push_screen`. Escape cancels with None.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from agent.actions import Action
from agent.approval import ApprovalRequest
from agent.tui.edit import EditError, initial_edit_text, parse_edit

_DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 80%; max-width: 100; height: auto;
    border: thick $accent; background: $surface; padding: 1 2;
}}
{name} Label {{ width: 100%; }}
{name} .error {{ color: $error; }}
"""


class EditScreen(ModalScreen[Action | None]):
    """Ask for a replacement action; returns the validated action, or None when cancelled."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="EditScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__()
        self._request = request

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Edit: {self._request.description}", markup=False)
            yield Label(
                'Type a new input point "x, y", new text (\\n is Enter) or keys, '
                'or JSON arguments such as {"action": "left_click", "coordinate": [500, 250]}.',
                markup=False,
            )
            yield Input(value=initial_edit_text(self._request), id="edit-input")
            yield Label("", id="edit-error", classes="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            action = parse_edit(event.value, self._request)
        except EditError as exc:
            self.query_one("#edit-error", Label).update(str(exc))
            return
        self.dismiss(action)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HintScreen(ModalScreen[str | None]):
    """Ask for the hint that goes back to the planner with a denial; None when cancelled."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="HintScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__()
        self._request = request

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Deny: {self._request.description}", markup=False)
            yield Label("Tell the model what to do instead (Enter sends, Escape cancels).")
            yield Input(
                placeholder="for example: the Submit button is further down", id="hint-input"
            )
            yield Label("", id="hint-error", classes="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        hint = event.value.strip()
        if not hint:
            self.query_one("#hint-error", Label).update(
                "the hint is empty; type one or press Escape"
            )
            return
        self.dismiss(hint)

    def action_cancel(self) -> None:
        self.dismiss(None)
