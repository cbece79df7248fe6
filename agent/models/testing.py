"""Test doubles for the model seam, shipped so tests never patch the loop.

- `ScriptedModel` answers from a queue of replies, or from a function of the request.
- `ReplayModel` serves recorded replies strictly in order: asking for more replies
  than were recorded raises, and `assert_exhausted()` raises when replies are left over.

Both record every request in `requests`, so a test can check the prompts the loop built.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable

from agent.errors import ModelError
from agent.models.base import ChatRequest, ModelReply, Usage
from agent.parsing import split_reasoning

Responder = Callable[[ChatRequest], str | ModelReply]


def make_reply(text: str, *, thinking_opened: bool = False) -> ModelReply:
    """Wrap raw text in a `ModelReply`, splitting off the reasoning as a backend would."""
    reasoning, content, _ = split_reasoning(text, thinking_opened=thinking_opened)
    return ModelReply(
        text=text,
        reasoning=reasoning,
        content=content,
        usage=Usage(completion_tokens=max(1, len(text) // 4)),
    )


class ScriptedModel:
    """A model that answers from a queue of texts, or by calling a function with each request.

    >>> model = ScriptedModel(['<tool_call>{"name": "computer_use", '
    ...                        '"arguments": {"action": "wait", "time": 1}}</tool_call>'])
    """

    def __init__(
        self,
        replies: Iterable[str | ModelReply] | Responder = (),
        *,
        name: str = "scripted",
        thinking: bool = False,
    ) -> None:
        self.name = name
        self.thinking = thinking
        self.requests: list[ChatRequest] = []
        self._responder: Responder | None = replies if callable(replies) else None
        self._queue: deque[str | ModelReply] = deque() if callable(replies) else deque(replies)

    def push(self, *replies: str | ModelReply) -> None:
        self._queue.extend(replies)

    def complete(self, request: ChatRequest) -> ModelReply:
        self.requests.append(request)
        if self._responder is not None:
            reply = self._responder(request)
        elif self._queue:
            reply = self._queue.popleft()
        else:
            raise ModelError(
                f"{self.name}: no scripted reply left for request {len(self.requests)}"
            )
        return _deliver(request, reply, self.thinking)


class ReplayModel:
    """A strict model that serves recorded replies in order, for deterministic replays."""

    def __init__(
        self, replies: Iterable[str | ModelReply], *, name: str = "replay", thinking: bool = False
    ) -> None:
        self.name = name
        self.thinking = thinking
        self.requests: list[ChatRequest] = []
        self._replies = list(replies)
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._replies) - self._next

    def complete(self, request: ChatRequest) -> ModelReply:
        self.requests.append(request)
        if self._next >= len(self._replies):
            raise ModelError(
                f"{self.name}: the recording has {len(self._replies)} replies but the run asked for "
                f"reply {self._next + 1}; the run diverged from the recording"
            )
        reply = self._replies[self._next]
        self._next += 1
        return _deliver(request, reply, self.thinking)

    def assert_exhausted(self) -> None:
        """Raise `ModelError` when recorded replies were never asked for."""
        if self.remaining:
            raise ModelError(
                f"{self.name}: {self.remaining} of {len(self._replies)} recorded replies were never "
                "used; the run ended before the recording did"
            )


def _deliver(request: ChatRequest, reply: str | ModelReply, thinking: bool) -> ModelReply:
    """Wrap a scripted reply and stream it to `request.on_text` in word-sized pieces."""
    result = reply if isinstance(reply, ModelReply) else make_reply(reply, thinking_opened=thinking)
    if request.on_text is not None:
        for piece in re.findall(r"\S+\s*|\s+", result.text):
            request.on_text(piece)
    return result
