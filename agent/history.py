"""Bounded history of earlier steps, laid out as chat turns.

The newest screenshots stay in the prompt as real turns: a user turn with the
screenshot, then the assistant's reply. Older steps become one text list in the
first user turn, as OSWorld's Qwen3-VL harness does. That list keeps the newest
`max_summaries` lines and replaces the rest with one line that counts them, so
the prompt stops growing once a run is long.

Screenshots leave the prompt in chunks of `drop_chunk`, not one per step. Between
two drops every new prompt extends the previous one, so a backend that reuses its
KV cache for the unchanged prefix evaluates only the new turns. A prompt therefore
holds between `images` and `images + drop_chunk - 1` screenshots once the run is
long enough, the current one included. With `drop_chunk=1` it holds exactly
`images`. The text list changes only when screenshots leave, so trimming it keeps
that prefix property.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from PIL import Image

from agent.models.base import ImagePart, Message, TextPart
from agent.prompts import render


@dataclass(frozen=True)
class HistoryConfig:
    """How many screenshots a prompt keeps and drops at once, and how many older steps it lists."""

    images: int = 4
    drop_chunk: int = 2
    # Maximum summary lines of older steps in the first user turn. Steps before them are
    # only counted.
    max_summaries: int = 20

    def __post_init__(self) -> None:
        if self.images < 1:
            raise ValueError(f"history images {self.images} is invalid; keep at least 1 screenshot")
        if self.drop_chunk < 1:
            raise ValueError(f"history drop chunk {self.drop_chunk} is invalid; use 1 or more")
        if self.max_summaries < 0:
            raise ValueError(
                f"history max summaries {self.max_summaries} is invalid; use 0 or more"
            )

    @property
    def max_images(self) -> int:
        """The maximum number of screenshots in one prompt, for budgeting the context window."""
        return self.images + self.drop_chunk - 1


@dataclass(frozen=True)
class PastStep:
    """One finished step, as later prompts show it."""

    step: int
    image: Image.Image
    # The step's action in plain words.
    action: str
    # The assistant turn for a model that acts: free text and one tool call.
    reply: str
    # The assistant turn for the planner: its instruction, or what was done.
    plan: str
    # One line for the text list of older steps.
    summary: str
    # The result of the step, shown at the start of the next user turn.
    outcome: str


@dataclass(frozen=True)
class PromptTurns:
    """The inputs of one prompt that are not history: system text, task, current screen."""

    system: str
    task: str
    step: int
    image: Image.Image
    # Notes for the current step, such as the parser's message about an invalid reply.
    notes: tuple[str, ...] = ()


class History:
    """The steps of one run so far, rendered into bounded chat prompts."""

    def __init__(self, config: HistoryConfig | None = None) -> None:
        self.config = config or HistoryConfig()
        self._steps: list[PastStep] = []

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def steps(self) -> Sequence[PastStep]:
        return tuple(self._steps)

    def append(self, past: PastStep) -> None:
        self._steps.append(past)

    def amend_last(self, *, summary: str, outcome: str) -> None:
        """Rewrite the newest step's summary and outcome, for facts learnt at the next step.

        The newest step's outcome only appears in the current prompt's last turn, so
        this never changes a prefix that an earlier prompt sent.
        """
        self._steps[-1] = replace(self._steps[-1], summary=summary, outcome=outcome)

    def first_kept(self) -> int:
        """Return the index of the first past step still shown with its screenshot.

        Counting the current screenshot, `n` screenshots exist. Once `n` exceeds
        `max_images`, the window start moves forward in whole chunks, so it stays
        put for `drop_chunk` steps at a time.
        """
        total = len(self._steps) + 1
        excess = total - self.config.max_images
        if excess <= 0:
            return 0
        return math.ceil(excess / self.config.drop_chunk) * self.config.drop_chunk

    def messages(self, turns: PromptTurns, *, planner: bool = False) -> tuple[Message, ...]:
        """Build the chat for one model call: system, task with older steps, then screenshot turns.

        `planner` picks the planner's own instructions as the assistant turns instead
        of the tool calls that carried them out.
        """
        first = self.first_kept()
        # The list depends only on `first`, so it changes only when screenshots leave.
        listed_from = max(0, first - self.config.max_summaries)
        earlier = [past.summary for past in self._steps[listed_from:first]]
        kept = self._steps[first:]
        previous = self._steps[first - 1].outcome if first > 0 else ""

        task_text = render("turn_task.jinja", task=turns.task, omitted=listed_from, earlier=earlier)
        opening: list[TextPart | ImagePart] = [TextPart(task_text)]
        messages = [Message.text("system", turns.system)]
        for past in kept:
            content = (*opening, ImagePart(past.image), _step_text(past.step, previous, ()))
            messages.append(Message("user", content))
            messages.append(Message.text("assistant", past.plan if planner else past.reply))
            opening, previous = [], past.outcome

        current = (*opening, ImagePart(turns.image), _step_text(turns.step, previous, turns.notes))
        messages.append(Message("user", current))
        return tuple(messages)

    def image_steps(self) -> dict[int, int]:
        """Map `id()` of each kept screenshot to its step, to name images in recordings."""
        return {id(past.image): past.step for past in self._steps[self.first_kept() :]}


def _step_text(step: int, previous: str, notes: Sequence[str]) -> TextPart:
    return TextPart(render("turn_step.jinja", step=step, previous=previous, notes=list(notes)))
